"""Ollama's native API end to end: `heylookllm serve` (echo) driven by the official `ollama` Python client."""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pydantic
import pytest

from heylook_core.testing import ServerProcess, free_port, serve

CONFIG = """\
default_model = "echo-small"
max_loaded_models = 4

[[models]]
id = "echo-small"
provider = "echo"
aliases = ["echo", "echo-small:v1"]

[[models]]
id = "echo-keep"
provider = "echo"

[[models]]
id = "echo-ttl"
provider = "echo"
"""
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a place",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    },
}


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


def _serve(root: Path, text: str) -> object:
    (root / "models.toml").write_text(text)
    return serve(root / "models.toml", env={"HEYLOOK_LOAD_PLUGINS": "echo", "XDG_DATA_HOME": str(root)})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with _serve(tmp_path_factory.mktemp("ollama"), CONFIG) as process:  # type: ignore[attr-defined]
        yield process


@pytest.fixture
def client(server: ServerProcess) -> Iterator[ollama.Client]:
    with ollama.Client(host=server.url) as sdk:
        yield sdk


# -- probes and model listings -----------------------------------------------------------------------------------


def test_root_and_version_answer_as_ollama_does(server: ServerProcess) -> None:
    root = httpx.get(server.url + "/")
    assert root.status_code == 200 and root.text == "Ollama is running"
    assert root.headers["content-type"].startswith("text/plain")
    head = httpx.head(server.url + "/")
    assert head.status_code == 200 and head.content == b""
    browser = httpx.get(server.url + "/", headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert browser.status_code == 200 and browser.text == "Ollama is running"  # no page at /ui: the same text
    version = httpx.get(server.url + "/api/version").json()
    assert version["version"].count(".") == 2 and "heylook" in version
    assert httpx.head(server.url + "/api/version").status_code == 200
    wrong = httpx.get(server.url + "/api/chat")
    assert wrong.status_code == 405 and wrong.json() == {"error": "405 method not allowed"}


def test_list(client: ollama.Client) -> None:
    listed = client.list()
    names = [model.model for model in listed.models]
    assert names == ["echo-small:latest", "echo-keep:latest", "echo-ttl:latest"]
    first = listed.models[0]
    assert first.digest and len(first.digest) == 64
    assert isinstance(first.modified_at, dt.datetime)
    assert first.details is not None and first.details.format == ""  # unknown facts stay empty, never invented


def test_show(client: ollama.Client) -> None:
    shown = client.show("echo-small:latest")
    assert shown.capabilities == ["completion", "tools", "insert", "vision", "thinking", "embedding"]
    assert shown.modelinfo is not None
    assert shown.modelinfo[f"{shown.modelinfo['general.architecture']}.context_length"] == 4096
    assert client.show("echo").capabilities == shown.capabilities  # an alias, and a name without a tag


def test_other_tags_resolve_only_as_aliases(client: ollama.Client) -> None:
    assert client.chat(model="echo-small:v1", messages=[{"role": "user", "content": "hi"}]).message.content == "hi"
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="echo-small:7b", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 404
    assert "model 'echo-small:7b' not found" in caught.value.error and "echo-small:latest" in caught.value.error


# -- chat and generate -------------------------------------------------------------------------------------------


def test_chat(client: ollama.Client) -> None:
    reply = client.chat(model="echo-small", messages=[{"role": "user", "content": "hello there"}])
    assert reply.message.role == "assistant" and reply.message.content == "hello there"
    assert reply.done and reply.done_reason == "stop"
    assert reply.eval_count == 2 and reply.prompt_eval_count and reply.prompt_eval_count > 0
    assert reply.total_duration and reply.eval_duration is not None and reply.prompt_eval_duration is not None
    assert reply.total_duration >= reply.eval_duration + reply.prompt_eval_duration
    assert reply.load_duration is not None
    assert reply.model == "echo-small"


def test_chat_streamed(client: ollama.Client) -> None:
    parts = list(client.chat(model="echo", messages=[{"role": "user", "content": "one two three"}], stream=True))
    assert "".join(part.message.content or "" for part in parts) == "one two three"
    assert [part.done for part in parts] == [False] * (len(parts) - 1) + [True]
    last = parts[-1]
    assert last.done_reason == "stop" and last.eval_count == 3 and last.message.content == ""
    assert last.total_duration and last.total_duration > 0


def test_chat_streams_ndjson(server: ServerProcess) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "a b"}]}  # streamed by default
    with httpx.stream("POST", server.url + "/api/chat", json=body) as response:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines[-1]["done"] is True and all(line["done"] is False for line in lines[:-1])


def test_generate(client: ollama.Client) -> None:
    reply = client.generate(model="echo", prompt="why is the sky blue")
    assert reply.response == "why is the sky blue" and reply.done and reply.done_reason == "stop"
    streamed = list(client.generate(model="echo", prompt="count with me", stream=True))
    assert "".join(part.response or "" for part in streamed) == "count with me"
    assert streamed[-1].done and streamed[-1].eval_count == 3


def test_generate_system_raw_and_options(client: ollama.Client) -> None:
    plain = client.generate(model="echo", prompt="count me")
    with_system = client.generate(model="echo", prompt="count me", system="be brief")
    assert with_system.response == "count me"
    assert (with_system.prompt_eval_count or 0) > (plain.prompt_eval_count or 0)  # the system message was sent
    raw = client.generate(model="echo", prompt="[INST] hi [/INST]", raw=True)
    assert raw.response == "[INST] hi [/INST]"
    cut = client.generate(
        model="echo", prompt="hi", options={"num_predict": 5, "temperature": 0.2, "seed": 1, "num_thread": 4}
    )
    assert cut.response == "hi lorem lorem lorem lorem" and cut.done_reason == "length" and cut.eval_count == 5
    stopped = client.chat(
        model="echo", messages=[{"role": "user", "content": "alpha beta gamma"}], options={"stop": [" gamma"]}
    )
    assert stopped.message.content == "alpha beta"


def test_images(client: ollama.Client) -> None:
    reply = client.chat(model="echo", messages=[{"role": "user", "content": "what is this", "images": [_png()]}])
    assert reply.message.content == "[1 image] what is this"
    generated = client.generate(model="echo", prompt="and this", images=[base64.b64encode(_png()).decode()])
    assert generated.response == "[1 image] and this"


def test_tools_round_trip(client: ollama.Client) -> None:
    messages: list[dict[str, object]] = [{"role": "user", "content": "weather in Paris"}]
    reply = client.chat(model="echo", messages=messages, tools=[WEATHER])
    calls = reply.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].function.name == "get_weather"
    assert calls[0].function.arguments == {"text": "weather in Paris"}  # an object, as Ollama sends it
    assert reply.done_reason == "stop"
    messages.append(reply.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "content": "sunny, 21 C", "tool_name": "get_weather"})
    answer = client.chat(model="echo", messages=messages, tools=[WEATHER])
    assert answer.message.content == "the tool said: sunny, 21 C" and not answer.message.tool_calls


def test_tools_streamed_and_as_python_functions(client: ollama.Client) -> None:
    def lookup(text: str) -> str:
        """Look a phrase up.

        Args:
          text: the phrase
        """
        return text

    parts = list(
        client.chat(model="echo", messages=[{"role": "user", "content": "find me"}], tools=[lookup], stream=True)
    )
    calls = [call for part in parts for call in (part.message.tool_calls or [])]
    assert [(call.function.name, dict(call.function.arguments)) for call in calls] == [("lookup", {"text": "find me"})]
    assert parts[-1].done


def test_format_schema(client: ollama.Client) -> None:
    class Echo(pydantic.BaseModel):
        echo: str

    reply = client.chat(
        model="echo", messages=[{"role": "user", "content": "structured"}], format=Echo.model_json_schema()
    )
    assert Echo.model_validate_json(reply.message.content or "").echo == "structured"
    loose = client.generate(model="echo", prompt="loose", format="json")
    assert json.loads(loose.response or "") == {"echo": "loose"}


def test_think(client: ollama.Client) -> None:
    reply = client.chat(model="echo", messages=[{"role": "user", "content": "three little words"}], think=True)
    assert reply.message.thinking == "The user wrote 3 words." and reply.message.content == "three little words"
    parts = list(client.generate(model="echo", prompt="two words", think=True, stream=True))
    assert "".join(part.thinking or "" for part in parts) == "The user wrote 2 words."
    assert "".join(part.response or "" for part in parts) == "two words"
    plain = client.chat(model="echo", messages=[{"role": "user", "content": "no thinking"}], think=False)
    assert plain.message.thinking is None


# -- embeddings --------------------------------------------------------------------------------------------------


def test_embed(client: ollama.Client) -> None:
    result = client.embed(model="echo", input=["first text", "second"])
    assert len(result.embeddings) == 2 and len(result.embeddings[0]) == 64
    assert result.embeddings[0] != result.embeddings[1]
    single = client.embed(model="echo", input="first text")
    assert single.embeddings == [result.embeddings[0]]
    older = client.embeddings(model="echo", prompt="first text")
    assert list(older.embedding) == result.embeddings[0]


# -- keep_alive --------------------------------------------------------------------------------------------------


def _loaded(client: ollama.Client) -> list[str]:
    return [model.model or "" for model in client.ps().models]


def test_ps_and_keep_alive(client: ollama.Client, server: ServerProcess) -> None:
    client.chat(model="echo-keep", messages=[{"role": "user", "content": "hi"}])
    assert "echo-keep:latest" in _loaded(client)
    running = next(model for model in client.ps().models if model.model == "echo-keep:latest")
    assert running.size_vram == 0 and running.expires_at is not None
    assert running.expires_at.year > 2200  # no TTL configured: kept loaded

    reply = client.chat(model="echo-keep", messages=[{"role": "user", "content": "bye"}], keep_alive=0)
    assert reply.message.content == "bye"  # answered first, unloaded after
    assert "echo-keep:latest" not in _loaded(client)
    assert "echo-keep" not in httpx.get(server.url + "/health").json()["loaded"]

    loaded = client.generate(model="echo-keep")  # an empty prompt only loads the model
    assert loaded.done and loaded.done_reason == "load" and "echo-keep:latest" in _loaded(client)
    unloaded = client.generate(model="echo-keep", keep_alive=0)
    assert unloaded.done_reason == "unload" and "echo-keep:latest" not in _loaded(client)


def test_keep_alive_duration_sets_the_idle_ttl(client: ollama.Client) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    client.chat(model="echo-ttl", messages=[{"role": "user", "content": "hi"}], keep_alive="10m")
    running = next(model for model in client.ps().models if model.model == "echo-ttl:latest")
    assert running.expires_at is not None
    left = (running.expires_at - before).total_seconds()
    assert 590 < left < 610
    client.chat(model="echo-ttl", messages=[{"role": "user", "content": "hi"}], keep_alive=-1)
    running = next(model for model in client.ps().models if model.model == "echo-ttl:latest")
    assert running.expires_at is not None and running.expires_at.year > 2200
    client.chat(model="echo-ttl", messages=[{"role": "user", "content": "hi"}], keep_alive=1)
    deadline = dt.datetime.now() + dt.timedelta(seconds=10)
    while "echo-ttl:latest" in _loaded(client) and dt.datetime.now() < deadline:
        pass
    assert "echo-ttl:latest" not in _loaded(client)  # unloaded by the router's idle timer


# -- errors ------------------------------------------------------------------------------------------------------


def test_unknown_model_is_a_404_listing_the_models(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="llama3", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 404
    assert caught.value.error.startswith("model 'llama3' not found") and "echo-small:latest" in caught.value.error


def test_model_management_says_models_are_configured(client: ollama.Client, server: ServerProcess) -> None:
    for call in (
        lambda: client.pull("llama3"),
        lambda: client.delete("echo-small"),
        lambda: client.copy("echo-small", "mine"),
        lambda: client.create("mine", from_="echo-small"),
    ):
        with pytest.raises(ollama.ResponseError) as caught:
            call()
        assert caught.value.status_code == 400 and "models.toml" in caught.value.error
    pushed = httpx.post(server.url + "/api/push", json={"model": "echo-small"})
    assert pushed.status_code == 400 and "models.toml" in pushed.json()["error"]


def test_errors_have_ollamas_shape(client: ollama.Client, server: ServerProcess) -> None:
    bad_json = httpx.post(server.url + "/api/chat", content=b"{nope", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and set(bad_json.json()) == {"error"}
    bad_role = httpx.post(server.url + "/api/chat", json={"model": "echo", "messages": [{"role": "x", "content": ""}]})
    assert bad_role.status_code == 400 and bad_role.json()["error"].startswith("messages[0].role")
    missing = httpx.post(server.url + "/api/generate", json={"prompt": "hi"})
    assert missing.status_code == 400 and missing.json() == {"error": "model: field required"}
    for options, name in (({"mirostat": 2}, "options.mirostat"), ({"num_ctx": 100000}, "options.num_ctx")):
        with pytest.raises(ollama.ResponseError) as caught:
            client.chat(model="echo", messages=[{"role": "user", "content": "hi"}], options=options)
        assert caught.value.status_code == 400 and name in caught.value.error
    fits = client.chat(model="echo", messages=[{"role": "user", "content": "hi"}], options={"num_ctx": 2048})
    assert fits.message.content == "hi"  # a window the model's context covers is honoured
    with pytest.raises(ollama.ResponseError) as caught:
        client.generate(model="echo", prompt="hi", raw=True, system="be brief")
    assert caught.value.status_code == 400 and caught.value.error.startswith("system needs a chat-templated prompt")
    with pytest.raises(ollama.ResponseError) as caught:
        client.generate(model="echo", prompt="hi", template="{{ .Prompt }}")
    assert caught.value.status_code == 400 and "template" in caught.value.error
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="echo", messages=[{"role": "user", "content": "!error"}])
    assert caught.value.status_code == 502
    with pytest.raises(ollama.ResponseError) as caught:
        for _ in client.chat(model="echo", messages=[{"role": "user", "content": "!midstream-error x"}], stream=True):
            pass
    assert "after the first token" in caught.value.error


def test_the_server_log_is_clean(server: ServerProcess) -> None:
    log = server.log()
    assert "Traceback" not in log, log


# -- the second listener and API keys ----------------------------------------------------------------------------


def test_ollama_port_opens_a_second_listener(tmp_path: Path) -> None:
    port = free_port()
    text = CONFIG.replace("max_loaded_models = 4\n", f"max_loaded_models = 4\n\n[server]\nollama_port = {port}\n")
    with _serve(tmp_path, text) as process:  # type: ignore[attr-defined]
        with ollama.Client(host=f"http://127.0.0.1:{port}") as sdk:
            assert [model.model for model in sdk.list().models][0] == "echo-small:latest"
            assert sdk.chat(model="echo", messages=[{"role": "user", "content": "via 11434"}]).message.content == (
                "via 11434"
            )
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "Ollama is running"
        assert httpx.get(process.url + "/api/tags").status_code == 200  # the main port serves them too
        assert f"Ollama API listening on http://127.0.0.1:{port}" in process.log()


def test_api_keys_apply_in_ollamas_shape(tmp_path: Path) -> None:
    text = CONFIG.replace("max_loaded_models = 4\n", 'max_loaded_models = 4\n\n[server]\napi_keys = ["sekrit"]\n')
    with _serve(tmp_path, text) as process:  # type: ignore[attr-defined]
        with ollama.Client(host=process.url) as anonymous:
            with pytest.raises(ollama.ResponseError) as caught:
                anonymous.list()
            assert caught.value.status_code == 401 and "API key" in caught.value.error
        with ollama.Client(host=process.url, headers={"Authorization": "Bearer sekrit"}) as keyed:
            assert keyed.chat(model="echo", messages=[{"role": "user", "content": "ok"}]).message.content == "ok"
        assert httpx.get(process.url + "/").text == "Ollama is running"  # the probe needs no key


def test_logprobs(client: ollama.Client) -> None:
    reply = client.chat(
        model="echo", messages=[{"role": "user", "content": "two tokens"}], logprobs=True, top_logprobs=1
    )
    assert reply.logprobs is not None and [item.token for item in reply.logprobs] == ["two", " tokens"]
    assert reply.logprobs[0].top_logprobs is not None and reply.logprobs[0].top_logprobs[0].token == "two"
    parts = list(client.generate(model="echo", prompt="a b", logprobs=True, stream=True))
    assert [item.token for part in parts for item in (part.logprobs or [])] == ["a", " b"]


def test_a_taken_ollama_port_stops_the_server(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = CONFIG.replace("max_loaded_models = 4\n", f"max_loaded_models = 4\n\n[server]\nollama_port = {port}\n")
        with pytest.raises(
            RuntimeError,
            match=r"(?s)exited with 2.*the Ollama listener.*cannot listen on 127.0.0.1:\d+: Address already",
        ):
            with _serve(tmp_path, text):  # type: ignore[attr-defined]
                pass


def test_suffix_is_a_completion_with_suffix(client: ollama.Client) -> None:
    reply = client.generate(model="echo", prompt="def add(a, b):", suffix="\n\nprint(add(1, 2))")
    assert reply.done and reply.response == "def add(a, b):"  # the echo model continues the plain prompt


def test_a_browser_at_root_is_sent_to_the_web_page_when_there_is_one(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from heylook_core.app import create_app
    from heylook_core.server import build_server

    (tmp_path / "models.toml").write_text(CONFIG)
    app = create_app(build_server(tmp_path / "models.toml"))
    app.add_api_route("/ui", lambda: {"page": True}, methods=["GET"])
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as http:
        browser = http.get("/", headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
        assert browser.status_code == 307 and browser.headers["location"] == "/ui"
        for accept in ("*/*", "application/json", "text/plain, text/html"):
            probe = http.get("/", headers={"accept": accept})
            assert probe.status_code == 200 and probe.text == "Ollama is running"
