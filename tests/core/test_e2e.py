"""End to end: `heylookllm serve` as a subprocess, driven by the official openai SDK and raw HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from heylook_core.testing import ServerProcess, serve
from tests.core.conftest import EXAMPLE

SLOW = EXAMPLE + '\n[[models]]\nid = "slow"\nprovider = "echo"\n[models.config]\ntoken_delay_ms = 50\n'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    path = tmp_path_factory.mktemp("e2e") / "models.toml"
    path.write_text(SLOW)
    with serve(path, env={"HEYLOOK_LOAD_PLUGINS": "echo"}) as process:
        yield process


@pytest.fixture
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def test_list_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["echo-small", "slow"]


def test_chat(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello sdk"}])
    assert reply.choices[0].message.content == "hello sdk"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == 2


def test_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="echo-small",
        messages=[{"role": "user", "content": "one two three"}],
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"top_k": 5, "min_p": 0.1, "repetition_penalty": 1.1},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three lorem lorem"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_embeddings(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="echo", input=["a", "b"])  # the SDK asks for base64 and decodes it
    assert len(result.data) == 2 and len(result.data[0].embedding) == 64
    assert abs(sum(v * v for v in result.data[0].embedding) - 1) < 1e-5


def test_unknown_model_raises_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-nothing", messages=[{"role": "user", "content": "x"}])
    assert "echo-small" in str(caught.value)


def test_bad_request_raises_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="echo", messages=[])


def test_midstream_error_raises_api_error(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "!midstream-error a b"}], stream=True
    )
    with pytest.raises(openai.APIError, match="after the first token"):
        list(stream)


def _in_flight(server: ServerProcess, model: str) -> int:
    families = text_string_to_metric_families(httpx.get(server.url + "/metrics").text)
    family = next(f for f in families if f.name == "heylook_model_in_flight")
    return int(next(s.value for s in family.samples if s.labels["model"] == model))


def test_client_disconnect_cancels_generation(server: ServerProcess) -> None:
    body = {"model": "slow", "messages": [{"role": "user", "content": "x"}], "max_tokens": 400, "stream": True}
    with httpx.stream("POST", server.base_url + "/chat/completions", json=body, timeout=10) as response:
        lines = response.iter_lines()
        received = [next(lines) for _ in range(6)]
        assert any('"content"' in line for line in received)
    # 400 tokens at 50 ms would take 20 s; the provider stops at its next token once the client is gone
    deadline = time.monotonic() + 3
    while _in_flight(server, "slow") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _in_flight(server, "slow") == 0
    started = time.monotonic()
    reply = httpx.post(server.base_url + "/chat/completions", json={**body, "stream": False, "max_tokens": 2}).json()
    assert reply["choices"][0]["message"]["content"] == "x lorem"
    assert time.monotonic() - started < 2  # the next request ran at once


def test_help_imports_no_backend() -> None:
    code = (
        "import sys; from heylook_core.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('llama_cpp', 'mlx', 'mlx_lm', 'mlx_vlm', 'torch', 'faster_whisper', 'ctranslate2', 'coremltools', 'av')"
        " or m == 'heylook_echo.provider']\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    assert "serve" in out and "doctor" in out


def test_cli_plugins_models_doctor(tmp_path: Path) -> None:
    import json

    run = [sys.executable, "-m", "heylook_core.cli"]
    env = {"HEYLOOK_LOAD_PLUGINS": "echo", "PATH": "", "XDG_CONFIG_HOME": str(tmp_path)}
    report = json.loads(
        subprocess.run(
            [*run, "plugins", "--json"], capture_output=True, text=True, check=True, env=env, cwd=tmp_path
        ).stdout
    )
    assert {p["name"]: p["status"] for p in report["plugins"]}["echo"] == "loaded"
    assert report["python"]["executable"] == sys.executable
    models = json.loads(
        subprocess.run(
            [*run, "models", "--json"], capture_output=True, text=True, check=True, env=env, cwd=tmp_path
        ).stdout
    )
    assert models["models"][0]["id"] == "echo" and models["models"][0]["status"] == "available"
    doctor = subprocess.run([*run, "doctor"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert doctor.returncode == 0 and "[  ok] provider echo" in doctor.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[[models]]\nid = "m"\nprovider = "echo"\nsize = 1\n')
    failed = subprocess.run(
        [*run, "serve", "--config", str(bad)], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert failed.returncode == 2
    assert str(bad) in failed.stderr and "model 'm'" in failed.stderr and "size" in failed.stderr


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        ([], "serve"),
        (["--port", "8977"], "serve"),
        (["--log-level", "debug", "--port", "1"], "serve"),
        (["--log-level=debug", "plugins"], "plugins"),
        (["doctor"], "doctor"),
    ],
)
def test_bare_heylookllm_means_serve(argv: list[str], command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from heylook_core import cli

    seen = {}

    def fake_parse(self: object, args: list[str]) -> None:
        seen["args"] = args
        raise SystemExit(0)

    monkeypatch.setattr("argparse.ArgumentParser.parse_args", fake_parse)
    with pytest.raises(SystemExit):
        cli.main(argv)
    remaining = [a for a in seen["args"] if not a.startswith("--log-level") and a != "debug"]
    assert remaining[0] == command
