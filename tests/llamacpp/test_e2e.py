"""``heylookllm`` with no models.toml serves the default model from PyPI, used through the openai SDK."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import openai
import pytest

from heylook_core.testing import serve

pytestmark = pytest.mark.slow


def test_no_config_serves_gemma_3_270m(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEYLOOK_CONFIG", raising=False)
    empty = tmp_path / "xdg-config"
    empty.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {"XDG_CONFIG_HOME": str(empty), "HEYLOOK_LOAD_PLUGINS": "llamacpp"}
    assert "HEYLOOK_CONFIG" not in os.environ
    with serve(env=env, cwd=cwd, timeout=120) as server:
        ids = [card["id"] for card in httpx.get(server.base_url + "/models", timeout=30).json()["data"]]
        assert ids == ["gemma-3-270m"]
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=300)
        reply = client.chat.completions.create(
            model="gemma-3-270m", messages=[{"role": "user", "content": "Hello!"}], max_tokens=5, temperature=0
        )
        assert reply.choices[0].message.content
        assert reply.usage.completion_tokens == 5
        pieces = [
            chunk.choices[0].delta.content or ""
            for chunk in client.chat.completions.create(
                model="gemma-3-270m",
                messages=[{"role": "user", "content": "Hello!"}],
                max_tokens=5,
                temperature=0,
                stream=True,
            )
            if chunk.choices
        ]
        assert "".join(pieces) == reply.choices[0].message.content
