"""``heylookllm import`` on the real Gemma 3 270M GGUF: its metadata, and the written models.toml serves it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

pytest.importorskip("gguf")
pytest.importorskip("tomlkit")

from heylook_core import importer  # noqa: E402
from heylook_core.testing import heylookllm_command, serve  # noqa: E402


def test_gemma_metadata(gguf: Path) -> None:
    info = importer.gguf_info(gguf)
    assert info["architecture"] == "gemma3"
    assert info["quantization"] == "Q4_K_M"
    assert info["chat_template"] is False  # this GGUF carries none: the import sets chat_format = "gemma"
    assert info["context_length"] == 32768
    assert 250_000_000 < info["parameter_count"] < 300_000_000


def test_imported_gemma_serves(gguf: Path, tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / gguf.name).symlink_to(gguf)
    out = tmp_path / "models.toml"
    env = dict(os.environ, HEYLOOK_LOAD_PLUGINS="llamacpp")
    result = subprocess.run(
        [*heylookllm_command(), "import", "--folder", str(folder), "--output", str(out), "--profile", "low-memory"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "gemma-3-270m-q4_k_m" in result.stdout
    text = out.read_text()
    assert 'provider = "llama_cpp"' in text and "n_ctx = 2048" in text and 'chat_format = "gemma"' in text
    with serve(out, env=env) as server:
        reply = httpx.post(
            server.base_url + "/chat/completions",
            json={
                "model": "gemma-3-270m-q4_k_m",
                "messages": [{"role": "user", "content": "Say hi"}],
                "max_tokens": 4,
            },
            timeout=120,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["usage"]["completion_tokens"] >= 1
