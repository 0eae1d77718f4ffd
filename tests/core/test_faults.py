"""Unexpected errors: one attributed log line, a sanitised 500, the connection kept; providers breaking the contract."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from heylook_core import CancelToken, Delta, ThreadedProvider, hookimpl
from heylook_core.app import create_app
from heylook_core.server import build_server
from heylook_core.testing import free_port
from heylook_core.types import ChatRequest
from heylook_echo.plugin import SPEC
from tests.core.conftest import user

CONFIG = """\
default_model = "healthy"
[[models]]
id = "healthy"
provider = "echo"
[[models]]
id = "broken"
provider = "faulty"
[models.config]
token_delay_ms = 0
"""


class FaultyProvider(ThreadedProvider):
    """Breaks the provider contract on request: the last user message says how."""

    def chat_sync(self, request: ChatRequest, cancel: CancelToken) -> Iterator[Any]:
        how = request.messages[-1].text()
        if how == "raise":
            raise RuntimeError("engine state corrupt at /secret/path/model.bin (0x7f3a2c001234)")
        if how == "str":
            yield "a plain string"
            return
        yield Delta(text="no finish")  # ends without its last delta


class FaultyPlugin:
    @hookimpl
    def register_providers(self, register: Any) -> None:
        register(replace(SPEC, name="faulty", factory=lambda: FaultyProvider, plugin="faulty"))


class HookRaises:
    @hookimpl
    def wrap_generation(self, request: Any, context: Any) -> Any:
        if "hook" in request.messages[-1].text():
            raise KeyError("the hook itself")
        return None


@pytest.fixture
def live(tmp_path: Path) -> Iterator[str]:
    """A real uvicorn server (keep-alive connections behave as in production)."""
    path = tmp_path / "models.toml"
    path.write_text(CONFIG)
    app = create_app(build_server(path, extra_plugins=[("faulty", FaultyPlugin()), ("hook-raises", HookRaises())]))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def chat(client: httpx.Client, model: str, text: str, **extra: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": model, "messages": user(text), **extra})


def test_keep_alive_connection_survives_an_unexpected_500(live: str) -> None:
    with httpx.Client(base_url=live, timeout=10) as client:
        failed = chat(client, "broken", "raise")
        assert failed.status_code == 500
        healthy = chat(client, "healthy", "still here")  # the same connection
        assert healthy.status_code == 200
        assert healthy.json()["choices"][0]["message"]["content"] == "still here"


def test_unexpected_error_is_attributed_and_sanitised(live: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    with httpx.Client(base_url=live, timeout=10) as client:
        for stream in (False, True):
            caplog.clear()
            reply = chat(client, "broken", "raise", stream=stream)
            assert reply.status_code == 500
            message = reply.json()["error"]["message"]
            assert "'broken'" in message and "server log" in message
            assert "/secret/path" not in message and "0x7f3a" not in message
            lines = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(lines) == 1, [r.getMessage() for r in lines]  # one line, one traceback
            text = lines[0].getMessage()
            assert "model 'broken'" in text and "provider 'faulty'" in text and "plugin 'faulty'" in text
            assert "engine state corrupt" in text  # the detail stays in the log
            assert lines[0].exc_info is not None


def test_a_provider_that_yields_a_str(live: str, caplog: pytest.LogCaptureFixture) -> None:
    with httpx.Client(base_url=live, timeout=10) as client:
        reply = chat(client, "broken", "str")
    assert reply.status_code == 500
    assert "AttributeError" not in reply.json()["error"]["message"]
    assert any("yielded a str, not a heylook_core.Delta" in r.getMessage() for r in caplog.records)


def test_an_exception_in_the_hook_itself_is_attributed(live: str, caplog: pytest.LogCaptureFixture) -> None:
    with httpx.Client(base_url=live, timeout=10) as client:
        reply = chat(client, "healthy", "hook please")
    assert reply.status_code == 500
    body = reply.json()["error"]
    assert body["code"] == "plugin_error" and "hook-raises" in body["message"] and "'healthy'" in body["message"]
    assert any("hook-raises" in r.getMessage() and "wrap_generation hook" in r.getMessage() for r in caplog.records)


def test_a_provider_that_ends_without_its_last_delta(live: str, caplog: pytest.LogCaptureFixture) -> None:
    with httpx.Client(base_url=live, timeout=10) as client:
        plain = chat(client, "broken", "finish").json()
        with client.stream(
            "POST", "/v1/chat/completions", json={"model": "broken", "messages": user("finish"), "stream": True}
        ) as response:
            frames = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert plain["choices"][0]["message"]["content"] == "no finish"
    assert plain["choices"][0]["finish_reason"] == "stop"
    chunks = [json.loads(frame) for frame in frames if frame != "[DONE]"]
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishes == ["stop"]  # streamed and not: the same, documented ending
    assert frames[-1] == "[DONE]"
    assert any("ended without its last event" in r.getMessage() for r in caplog.records)
