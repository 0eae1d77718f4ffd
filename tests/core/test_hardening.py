"""Hardening (issue 12): protocol details, optional dependencies and plugin faults, against the echo provider."""

from __future__ import annotations

import logging
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from heylook_core import Capability, ModelEntry, ProviderSpec, hookimpl
from heylook_core.app import create_app
from heylook_core.errors import PluginLoadError
from heylook_core.plugins import PluginHost
from heylook_core.providers import ThreadedProvider
from heylook_core.runner import CancelToken
from heylook_core.server import build_server
from heylook_core.types import ChatRequest, Delta, Usage
from tests.core.conftest import user

WAV = b"RIFF\x24\x00\x00\x00WAVEfmt "  # a header only: what matters is that no decoder is reached


@pytest.fixture
def no_pyav(monkeypatch: pytest.MonkeyPatch) -> None:
    """The core installed without the ``audio`` extra."""
    monkeypatch.setitem(sys.modules, "av", None)  # ``import av`` raises ImportError


@pytest.mark.parametrize("route", ["/v1/audio/transcriptions", "/v1/audio/translations"])
def test_audio_without_pyav_is_a_501_naming_the_extra(client: TestClient, no_pyav: None, route: str) -> None:
    response = client.post(route, files={"file": ("a.wav", WAV)}, data={"model": "echo-small"})
    assert response.status_code == 501, response.text
    error = response.json()["error"]
    assert error["code"] == "audio_decoder_missing"
    assert "pip install 'heylook-core[audio]'" in error["message"]


@pytest.mark.parametrize("route", ["/v1/audio/transcriptions", "/v1/audio/translations"])
def test_an_empty_audio_model_field_is_the_default_model(client: TestClient, no_pyav: None, route: str) -> None:
    response = client.post(route, files={"file": ("a.wav", WAV)}, data={"model": ""})
    assert response.status_code == 501, response.text  # reached the decoder: the default model was used


def _chat_only_plugin() -> types.ModuleType:
    from heylook_echo.provider import EchoProvider

    module = types.ModuleType("chat_only_plugin")

    @hookimpl
    def register_providers(register: Callable[[ProviderSpec], None]) -> None:
        register(
            ProviderSpec(name="chat_only", factory=lambda: EchoProvider, capabilities=frozenset({Capability.CHAT}))
        )

    module.register_providers = register_providers  # type: ignore[attr-defined]
    return module


def test_audio_capability_is_checked_before_the_decoder(make_client: Callable[..., TestClient], no_pyav: None) -> None:
    client = make_client(
        '[[models]]\nid = "chatty"\nprovider = "chat_only"\n', plugins=[("chat_only", _chat_only_plugin())]
    )
    response = client.post("/v1/audio/transcriptions", files={"file": ("a.wav", WAV)}, data={"model": "chatty"})
    assert response.status_code == 400, response.text
    assert "does not support audio transcription" in response.json()["error"]["message"]


@pytest.mark.parametrize("route", ["/v1/audio/transcriptions", "/v1/audio/translations"])
def test_audio_model_name_too_long_is_a_400(client: TestClient, route: str) -> None:
    response = client.post(route, files={"file": ("a.wav", WAV)}, data={"model": "x" * 300})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "model"


# --------------------------------------------------------------------------------------------------------------
# Protocol details


def chat(client: TestClient, **fields: object) -> httpx.Response:
    body = {"model": "echo-small", "messages": [{"role": "user", "content": "hi"}], **fields}
    return client.post("/v1/chat/completions", json=body)


def error_of(response: httpx.Response, status: int = 400) -> dict[str, object]:
    assert response.status_code == status, response.text
    return response.json()["error"]


TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize(
    ("part", "kind"),
    [
        ({"type": "file", "file": {"file_data": "x"}}, "file"),
        ({"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}, "input_audio"),
        ({"type": "video", "video": {}}, "video"),
    ],
)
def test_a_rejected_content_part_names_its_type_at_its_path(client: TestClient, part: dict, kind: str) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "see"}, part]}]
    error = error_of(chat(client, messages=messages))
    assert error["param"] == "messages.0.content.1.type"
    assert f"content parts of type '{kind}' are not supported" in error["message"]
    assert ".str" not in error["message"]


def test_an_assistant_refusal_part_is_named(client: TestClient) -> None:
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
        {"role": "user", "content": "b"},
    ]
    error = error_of(chat(client, messages=messages))
    assert error["param"] == "messages.1.content.0.type"
    assert "'refusal'" in error["message"]


def test_a_bad_field_in_a_part_is_named_at_its_path(client: TestClient) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}]}]
    error = error_of(chat(client, messages=messages))
    assert error["param"] == "messages.0.content.1.image_url"


def test_cache_control_on_a_part_is_accepted(client: TestClient) -> None:
    part = {"type": "text", "text": "cached words", "cache_control": {"type": "ephemeral"}}
    response = chat(client, messages=[{"role": "user", "content": [part]}])
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "cached words"


def test_tool_choice_naming_a_function_not_in_tools_is_a_400(client: TestClient) -> None:
    error = error_of(chat(client, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "other"}}))
    assert error["param"] == "tool_choice"
    assert error["message"] == "tool_choice names the function 'other', which is not in tools"


def test_an_empty_tool_choice_object_is_a_400(client: TestClient) -> None:
    assert error_of(chat(client, tools=TOOLS, tool_choice={}))["param"] == "tool_choice"


def test_an_empty_model_is_a_400(client: TestClient) -> None:
    assert error_of(chat(client, model=""))["param"] == "model"
    assert error_of(client.post("/v1/embeddings", json={"model": "", "input": "a"}))["param"] == "model"
    assert error_of(client.get("/v1/models/"))["param"] == "model"


def test_a_trailing_slash_on_a_model_resolves(client: TestClient) -> None:
    response = client.get("/v1/models/echo-small/")
    assert response.status_code == 200, response.text
    assert response.json()["id"] == "echo-small"


def test_stream_options_without_stream_is_a_400(client: TestClient) -> None:
    error = error_of(chat(client, stream_options={"include_usage": True}))
    assert error["param"] == "stream_options"
    completion = client.post(
        "/v1/completions", json={"prompt": "a", "stream": False, "stream_options": {"include_usage": True}}
    )
    assert error_of(completion)["param"] == "stream_options"
    assert chat(client, stream=True, stream_options={"include_usage": True}).status_code == 200


def test_validator_messages_name_their_param_without_pydantic_prefix(client: TestClient) -> None:
    error = error_of(chat(client, top_logprobs=2))
    assert (error["param"], error["message"]) == ("top_logprobs", "top_logprobs needs logprobs = true")
    error = error_of(client.post("/v1/embeddings", json={"input": ""}))
    assert (error["param"], error["message"]) == ("input", "input must not be empty")
    error = error_of(chat(client, tool_choice="auto"))
    assert error["param"] == "tool_choice"
    assert "Value error" not in error["message"]


def test_multipart_validation_messages_name_their_param(client: TestClient) -> None:
    body = '{"messages": [{"role": "user", "content": "a"}], "top_logprobs": 2}'
    error = error_of(client.post("/v1/chat/completions/multipart", files={"request": (None, body)}))
    assert error["param"] == "request.top_logprobs", error
    assert error["message"] == "request.top_logprobs needs logprobs = true"


@pytest.mark.parametrize("path", ["/v1/models", "/v1/models/echo-small", "/health", "/api/tags", "/openapi.json"])
def test_head_on_get_routes(client: TestClient, path: str) -> None:
    get = client.get(path)
    head = client.head(path)
    assert head.status_code == 200 == get.status_code
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]


def test_head_on_a_post_route_is_still_a_405(client: TestClient) -> None:
    assert client.head("/v1/chat/completions").status_code == 405


def test_the_404_for_an_unknown_route_names_the_path_and_the_apis(client: TestClient) -> None:
    error = error_of(client.get("/v2/chat/completions"), 404)
    assert "GET /v2/chat/completions" in error["message"]
    assert "/v1" in error["message"] and "/docs" in error["message"]


def test_parameters_that_change_no_output_are_accepted(client: TestClient) -> None:
    response = chat(
        client,
        store=False,
        metadata={"team": "a"},
        user="someone",
        service_tier="auto",
        prompt_cache_key="k1",
        safety_identifier="hash",
        parallel_tool_calls=True,
        modalities=["text"],
        tools=TOOLS,
    )
    assert response.status_code == 200, response.text
    assert chat(client, parallel_tool_calls=False).status_code == 200


def test_modalities_other_than_text_are_a_400(client: TestClient) -> None:
    assert error_of(chat(client, modalities=["text", "audio"]))["param"].startswith("modalities")


def test_reasoning_effort_maps_onto_enable_thinking(client: TestClient) -> None:
    thinking = chat(client, reasoning_effort="medium").json()["choices"][0]["message"]
    assert thinking["reasoning_content"] == "The user wrote 1 words."
    plain = chat(client, reasoning_effort="none").json()["choices"][0]["message"]
    assert "reasoning_content" not in plain
    assert error_of(chat(client, reasoning_effort="none", enable_thinking=True))["param"] == "reasoning_effort"


def test_reasoning_effort_on_a_model_without_thinking_is_a_400(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(
        '[[models]]\nid = "chatty"\nprovider = "chat_only"\n', plugins=[("chat_only", _chat_only_plugin())]
    )
    body = {"model": "chatty", "messages": [{"role": "user", "content": "hi"}]}
    error = error_of(client.post("/v1/chat/completions", json={**body, "reasoning_effort": "high"}))
    assert error["param"] == "reasoning_effort"


def test_embedding_token_ids_are_refused_with_the_langchain_fix(client: TestClient) -> None:
    for value in ([1, 2, 3], [[1, 2], [3]]):
        error = error_of(client.post("/v1/embeddings", json={"input": value}))
        assert error["param"] == "input"
        assert "check_embedding_ctx_length=False" in error["message"]
        assert "embedding_token_ids = true" in error["message"]


def test_embedding_token_ids_when_the_model_opts_in(make_client: Callable[..., TestClient]) -> None:
    client = make_client('[[models]]\nid = "e"\nprovider = "echo"\nembedding_token_ids = true\n')
    response = client.post("/v1/embeddings", json={"input": [[1, 2], [3]]})
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 2


# --------------------------------------------------------------------------------------------------------------
# Plugins


class BadOffer:
    @hookimpl
    def register_models(self, register: Callable[[ModelEntry], None]) -> None:
        register(ModelEntry(id="good-offer", provider="echo"))
        register(ModelEntry(id="bad-offer", provider="echo", config={"not_a_key": 3}))


class Unmarked:
    """Forgot @hookimpl on both functions."""

    def register_providers(self, register: Any) -> None:
        raise AssertionError("never called")

    def startup(self, app: Any) -> None:
        raise AssertionError("never called")


class RaisesOnRegister:
    @hookimpl
    def register_providers(self, register: Any) -> None:
        raise RuntimeError("cannot find my engine")


class SecondEcho:
    @hookimpl
    def register_providers(self, register: Any) -> None:
        from heylook_echo.plugin import SPEC

        register(SPEC)


def test_a_refused_offer_fails_alone_named_by_its_plugin(caplog: pytest.LogCaptureFixture) -> None:
    server = build_server(extra_plugins=[("bad-offer-plugin", BadOffer())])
    assert server.settings.source == "plugins"
    assert "good-offer" in server.settings.model_ids() and "bad-offer" not in server.settings.model_ids()
    record = server.host.records["bad-offer-plugin"]
    assert record.models == ["good-offer"]
    assert record.failed_models[0]["model"] == "bad-offer"
    assert "not_a_key" in record.failed_models[0]["error"]
    assert "plugin 'bad-offer-plugin'" in caplog.text and "bad-offer" in caplog.text
    with TestClient(create_app(server), base_url="http://127.0.0.1") as client:
        health = client.get("/health").json()
        assert [(f["plugin"], f["model"]) for f in health["failed_models"]] == [("bad-offer-plugin", "bad-offer")]
        assert health["failed_models"][0]["distribution"]
        reply = client.post("/v1/chat/completions", json={"model": "good-offer", "messages": user("still here")})
        assert reply.status_code == 200, reply.text


def test_a_refused_offer_stops_the_server_in_strict_mode() -> None:
    with pytest.raises(PluginLoadError, match="(?s)bad-offer-plugin.*bad-offer.*HEYLOOK_STRICT_PLUGINS"):
        PluginHost(extra_plugins=[("bad-offer-plugin", BadOffer())], strict=True).load()


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str, plugins=()) -> tuple:
    from heylook_core import cli

    original = PluginHost.__init__

    def with_extra(self: PluginHost, **kwargs: Any) -> None:
        original(self, **{**kwargs, "extra_plugins": list(plugins)})

    monkeypatch.setattr(PluginHost, "__init__", with_extra)
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_plugins_command_shows_failed_offers(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    status, out, _ = run_cli(monkeypatch, capsys, "plugins", plugins=[("bad-offer-plugin", BadOffer())])
    assert status == 0
    assert "model bad-offer refused" in out and "not_a_key" in out


def test_functions_named_like_hooks_without_hookimpl_warn(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    host = PluginHost(extra_plugins=[("unmarked", Unmarked())]).load()
    record = host.records["unmarked"]
    assert record.status == "loaded" and record.hooks == []
    assert any("'register_providers'" in w and "@hookimpl" in w for w in record.warnings)
    assert any("'startup'" in w for w in record.warnings)
    assert "no @hookimpl" in caplog.text
    status, out, _ = run_cli(monkeypatch, capsys, "plugins", plugins=[("unmarked", Unmarked())])
    assert status == 0 and "warning: 'register_providers' is named like a hook but has no @hookimpl" in out
    assert "(no hooks)" in out


def test_strict_mode_plugins_command_still_lists_what_loaded_and_failed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("HEYLOOK_STRICT_PLUGINS", "1")
    status, out, _ = run_cli(monkeypatch, capsys, "plugins", plugins=[("raiser", RaisesOnRegister())])
    assert status == 0
    assert "echo" in out and "loaded" in out
    assert "raiser" in out and "failed" in out and "cannot find my engine" in out
    assert "the server will not start" in out
    status, _, err = run_cli(monkeypatch, capsys, "serve", "--port", "0", plugins=[("raiser", RaisesOnRegister())])
    assert status == 2


def test_plugins_verbose_shows_the_traceback_with_file_and_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="heylook_core.plugins")
    status, out, _ = run_cli(monkeypatch, capsys, "plugins", "--verbose", plugins=[("raiser", RaisesOnRegister())])
    assert status == 0
    assert "Traceback (most recent call last)" in out
    assert f'File "{__file__}", line' in out and "RuntimeError: cannot find my engine" in out
    assert __file__ in caplog.text  # debug logging holds the traceback too
    _, plain, _ = run_cli(monkeypatch, capsys, "plugins", plugins=[("raiser", RaisesOnRegister())])
    assert "Traceback" not in plain


def test_a_duplicate_provider_names_both_distributions_and_plugins_and_doctor_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    status, out, _ = run_cli(monkeypatch, capsys, "plugins", plugins=[("second-echo", SecondEcho())])
    assert status == 0
    assert "provider name 'echo'" in out and "heylook-echo" in out and "'second-echo'" in out
    status, out, _ = run_cli(monkeypatch, capsys, "doctor", plugins=[("second-echo", SecondEcho())])
    assert status == 1 and "[fail] plugin second-echo" in out and "heylook-echo" in out
    status, _, _ = run_cli(monkeypatch, capsys, "serve", "--port", "0", plugins=[("second-echo", SecondEcho())])
    assert status == 2


# --------------------------------------------------------------------------------------------------------------
# A model's worker thread that dies or wedges; a load that stalls

RELEASE = threading.Event()  # set at the end of each fault test so abandoned threads end


class FaultyProvider(ThreadedProvider):
    """Echoes; "!wedge" blocks its worker after the first token; config load_s stalls the load."""

    loads = 0

    def load_sync(self) -> None:
        FaultyProvider.loads += 1
        if self.config.get("stall_load") and FaultyProvider.loads == 1:
            RELEASE.wait(30)

    def chat_sync(self, request: ChatRequest, cancel: CancelToken) -> Iterator[Delta]:
        text = request.messages[-1].text()
        yield Delta(text="first ")
        if text == "!wedge":
            RELEASE.wait(30)
        yield Delta(text=text, finish_reason="stop", usage=Usage(1, 2))


def _faulty_plugin() -> types.ModuleType:
    module = types.ModuleType("faulty_plugin")

    @hookimpl
    def register_providers(register: Callable[[ProviderSpec], None]) -> None:
        register(
            ProviderSpec(
                name="faulty",
                factory=lambda: FaultyProvider,
                capabilities=frozenset({Capability.CHAT}),
                config_schema=FaultyConfig,
            )
        )

    module.register_providers = register_providers  # type: ignore[attr-defined]
    return module


class FaultyConfig(BaseModel):
    stall_load: bool = False

    def get(self, key: str) -> Any:
        return getattr(self, key)


FAULTY = """
[server]
stall_timeout_s = 1.5
load_timeout_s = 1.5
[[models]]
id = "faulty"
provider = "faulty"
[[models]]
id = "slow-load"
provider = "faulty"
[models.config]
stall_load = true
"""


@pytest.fixture
def faulty(make_client: Callable[..., TestClient]) -> Iterator[TestClient]:
    RELEASE.clear()
    FaultyProvider.loads = 0
    yield make_client(FAULTY, plugins=[("faulty", _faulty_plugin())])
    RELEASE.set()


def ask(client: TestClient, text: str, model: str = "faulty", **fields: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": model, "messages": user(text), **fields})


def test_a_wedged_worker_fails_its_request_and_the_model_reloads(faulty: TestClient) -> None:
    assert ask(faulty, "hello").json()["choices"][0]["message"]["content"] == "first hello"
    error = error_of(ask(faulty, "!wedge"), 502)
    assert error["code"] == "worker_failed"
    assert "model 'faulty' failed" in error["message"] and "wedged" in error["message"]
    assert "reloads" in error["message"]
    health = faulty.get("/health").json()
    assert "faulty" in health["failed"] and "faulty" not in health["loaded"]
    assert faulty.get("/v1/models/faulty").json()["state"] == "failed"
    reply = ask(faulty, "back again")
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == "first back again"
    assert FaultyProvider.loads == 2
    assert faulty.get("/health").json()["failed"] == {}


def test_a_wedged_stream_ends_with_an_error_event(faulty: TestClient) -> None:
    with faulty.stream(
        "POST", "/v1/chat/completions", json={"model": "faulty", "messages": user("!wedge"), "stream": True}
    ) as response:
        body = "".join(response.iter_text())
    assert '"code": "worker_failed"' in body or '"code":"worker_failed"' in body
    assert body.rstrip().endswith("data: [DONE]")


def test_a_worker_thread_that_died_is_noticed_and_the_model_reloads(faulty: TestClient) -> None:
    assert ask(faulty, "hello").status_code == 200
    slot = faulty.app.state.heylook.router.slots["faulty"]
    worker = slot.provider.worker
    worker._jobs.put(None)  # the thread ends while the model is still loaded
    worker.thread.join(5)
    assert not worker.thread.is_alive()
    health = faulty.get("/health").json()
    assert "ended unexpectedly" in health["failed"]["faulty"]
    reply = ask(faulty, "after the crash")
    assert reply.status_code == 200, reply.text
    assert FaultyProvider.loads == 2


def test_a_worker_call_fails_when_its_thread_dies() -> None:
    import asyncio

    from heylook_core.runner import WATCH_INTERVAL_S, ModelWorker, WorkerFailedError

    async def main() -> None:
        worker = ModelWorker("m")
        started = threading.Event()

        def stuck() -> None:
            started.set()
            RELEASE.wait(30)

        call = asyncio.ensure_future(worker.call(stuck))
        await asyncio.to_thread(started.wait, 5)
        dead = threading.Thread(target=lambda: None)
        dead.start()
        dead.join()
        worker._thread = dead  # as far as anyone can tell, the worker thread is gone
        with pytest.raises(WorkerFailedError, match="ended unexpectedly"):
            await asyncio.wait_for(call, WATCH_INTERVAL_S * 5)

    RELEASE.clear()
    try:
        asyncio.run(main())
    finally:
        RELEASE.set()


def test_a_load_that_stalls_is_reported_not_waited_on(faulty: TestClient) -> None:
    error = error_of(ask(faulty, "hi", model="slow-load"), 503)
    assert error["code"] == "model_load_failed"
    assert "did not finish loading within 1.5 s (load_timeout_s)" in error["message"]
    assert "slow-load" in faulty.get("/health").json()["failed"]
    reply = ask(faulty, "hi", model="slow-load")  # the next request loads it again
    assert reply.status_code == 200, reply.text
