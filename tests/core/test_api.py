"""The OpenAI-compatible routes against the echo provider."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.core.conftest import user


def sse_events(text: str) -> list[Any]:
    events = []
    for block in text.split("\n\n"):
        block = block.strip()
        if not block or block.startswith(":"):
            continue
        assert block.startswith("data: "), block
        payload = block[len("data: ") :]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def assert_error(response: Any, status: int, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return error


# -- models --------------------------------------------------------------------------------------------------------


def test_models_list_and_get(client: TestClient) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    [card] = body["data"]
    assert card["id"] == "echo-small"
    assert card["object"] == "model"
    assert isinstance(card["created"], int)
    assert card["owned_by"] == "heylook"
    assert card["aliases"] == ["echo"]
    assert "chat" in card["capabilities"]
    assert card["concurrency"] == 1  # requests it runs at once (echo's default)
    assert card["loaded"] is False
    assert client.get("/v1/models/echo").json()["id"] == "echo-small"
    assert_error(client.get("/v1/models/missing"), 404, code="model_not_found")


# -- chat ----------------------------------------------------------------------------------------------------------


def test_chat_non_stream(client: TestClient) -> None:
    response = client.post("/v1/chat/completions", json={"model": "echo", "messages": user("hello there")})
    assert response.status_code == 200
    body = response.json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "echo"
    [choice] = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": "hello there"}
    assert choice["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 2
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 2


def test_chat_default_model_when_absent(client: TestClient) -> None:
    body = client.post("/v1/chat/completions", json={"messages": user("hi")}).json()
    assert body["model"] == "echo-small"


def test_chat_max_tokens_gives_length(client: TestClient) -> None:
    body = client.post("/v1/chat/completions", json={"messages": user("a b c d e"), "max_tokens": 3}).json()
    assert body["choices"][0]["message"]["content"] == "a b c"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3
    body = client.post("/v1/chat/completions", json={"messages": user("a"), "max_completion_tokens": 3}).json()
    assert body["choices"][0]["message"]["content"] == "a lorem lorem"


def test_chat_stop_sequence_is_cut_and_gives_stop(client: TestClient) -> None:
    body = client.post(
        "/v1/chat/completions", json={"messages": user("one two three four"), "stop": [" thr"], "max_tokens": 10}
    ).json()
    assert body["choices"][0]["message"]["content"] == "one two"
    assert body["choices"][0]["finish_reason"] == "stop"


def test_chat_stream_framing(client: TestClient) -> None:
    response = client.post(
        "/v1/chat/completions",
        json={"messages": user("hello big world"), "stream": True, "stream_options": {"include_usage": True}},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    ids = {chunk["id"] for chunk in chunks}
    assert len(ids) == 1
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 3
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    assert content == "hello big world"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks[:-1]]
    assert finishes[-1] == "stop" and all(f is None for f in finishes[:-1])


def test_chat_stream_without_usage_has_no_usage_chunk(client: TestClient) -> None:
    events = sse_events(client.post("/v1/chat/completions", json={"messages": user("x"), "stream": True}).text)
    assert events[-1] == "[DONE]"
    assert all("usage" not in chunk for chunk in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


def test_reasoning_is_split_out(client: TestClient) -> None:
    body = client.post("/v1/chat/completions", json={"messages": user("hi you"), "enable_thinking": True}).json()
    message = body["choices"][0]["message"]
    assert message["content"] == "hi you"
    assert message["reasoning_content"] == "The user wrote 2 words."
    events = sse_events(
        client.post("/v1/chat/completions", json={"messages": user("hi"), "enable_thinking": True, "stream": True}).text
    )
    deltas = [e["choices"][0]["delta"] for e in events[:-1]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "The user wrote 1 words."
    assert "".join(d.get("content") or "" for d in deltas) == "hi"


def test_logprobs(client: TestClient) -> None:
    body = client.post(
        "/v1/chat/completions", json={"messages": user("a b"), "logprobs": True, "top_logprobs": 1}
    ).json()
    content = body["choices"][0]["logprobs"]["content"]
    assert [item["token"] for item in content] == ["a", " b"]
    assert content[0]["top_logprobs"][0]["token"] == "a"


def test_tool_calls_stream_and_non_stream(client: TestClient) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    body = client.post("/v1/chat/completions", json={"messages": user("find x"), "tools": tools}).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "lookup"
    assert json.loads(call["function"]["arguments"]) == {"text": "find x"}
    events = sse_events(
        client.post("/v1/chat/completions", json={"messages": user("find x"), "tools": tools, "stream": True}).text
    )
    fragments = [f for e in events[:-1] for f in e["choices"][0]["delta"].get("tool_calls", [])]
    assert fragments[0]["id"] == call["id"] and fragments[0]["function"]["name"] == "lookup"
    assert "".join(f["function"]["arguments"] for f in fragments) == call["function"]["arguments"]


def test_image_parts(make_client: Any) -> None:
    client = make_client()
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "what"}, image, image]}]
    body = client.post("/v1/chat/completions", json={"messages": messages}).json()
    assert body["choices"][0]["message"]["content"] == "[2 images] what"
    for url, words in [
        ("http://127.0.0.1/cat.png", "remote image URLs are off"),
        ("file:///etc/passwd", "unsupported image URL scheme"),
        ("data:image/png;base64,!!!", "not valid base64"),
        ("data:text/plain;base64,AAAA", "data:image/"),
    ]:
        part = {"type": "image_url", "image_url": {"url": url}}
        error = assert_error(
            client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": [part]}]}), 400
        )
        assert words in error["message"]
        assert error["param"] == "messages[0].content[0].image_url.url"


def test_remote_images_never_reach_private_addresses(make_client: Any) -> None:
    client = make_client("[server]\nallow_remote_images = true\n" + _models("m"))
    for url in ("http://127.0.0.1:9/cat.png", "http://localhost/cat.png", "http://10.0.0.1/cat.png"):
        part = {"type": "image_url", "image_url": {"url": url}}
        error = assert_error(
            client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": [part]}]}), 400
        )
        assert "non-public" in error["message"]


# -- bad input -----------------------------------------------------------------------------------------------------


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post(
        "/v1/chat/completions", content=b'{"messages": [', headers={"content-type": "application/json"}
    )
    assert_error(response, 400, code="invalid_json")


def test_body_read_as_json_whatever_the_content_type(client: TestClient) -> None:
    response = client.post(
        "/v1/chat/completions",
        content=json.dumps({"messages": user("hi")}),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": user("x"), "temperature": "hot"}, "temperature"),
        ({"messages": user("x"), "temperature": 9}, "temperature"),
        ({"messages": user("x"), "max_tokens": 0}, "max_tokens"),
        ({"messages": user("x"), "n": 2}, "n"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, None),
        ({"messages": user("x"), "stop": [""]}, "stop"),
        ({"messages": user("x"), "top_logprobs": 2}, None),
        ({"messages": user("x"), "response_format": {"type": "json_schema"}}, None),
        ({}, "messages"),
        ([1, 2], None),
        ({"messages": [{"role": "user", "content": []}]}, None),
        ({"messages": user("x"), "tool_choice": "auto"}, None),
        ({"messages": user("x"), "logit_bias": {"a": 1}}, "logit_bias"),
        ({"messages": user("x"), "logit_bias": {"5": 101}}, "logit_bias"),
    ],
)
def test_invalid_bodies_are_400(client: TestClient, body: Any, param: str | None) -> None:
    error = assert_error(client.post("/v1/chat/completions", json=body), 400, param=param)
    assert error["type"] == "invalid_request_error"


def test_unknown_model_is_404_listing_available(client: TestClient) -> None:
    error = assert_error(
        client.post("/v1/chat/completions", json={"model": "gpt-9", "messages": user("x")}), 404, code="model_not_found"
    )
    assert "echo-small" in error["message"]


def test_unknown_parameter_is_400_naming_it(client: TestClient) -> None:
    error = assert_error(client.post("/v1/chat/completions", json={"messages": user("x"), "mirostat": 2}), 400)
    assert error["param"] == "mirostat"
    assert "echo-small" in error["message"]


def test_oversized_body_is_413(make_client: Any) -> None:
    client = make_client("[server]\nmax_body_bytes = 2048\n" + _models("echo-small"))
    response = client.post("/v1/chat/completions", json={"messages": user("x" * 5000)})
    assert_error(response, 413)
    # without a content-length (chunked), the limit holds too
    response = client.post(
        "/v1/chat/completions", content=iter([b'{"messages": [{"role": "user", "content": "', b"x" * 5000, b'"}]}'])
    )
    assert_error(response, 413)


def test_unknown_route_and_method_use_error_shape(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing-here"), 404)
    assert_error(client.get("/v1/chat/completions"), 405)


def test_provider_error_before_first_token_has_status(client: TestClient) -> None:
    error = assert_error(client.post("/v1/chat/completions", json={"messages": user("!error"), "stream": True}), 502)
    assert "scripted failure" in error["message"]


def test_provider_error_mid_stream_is_an_error_event(client: TestClient) -> None:
    response = client.post("/v1/chat/completions", json={"messages": user("!midstream-error x y"), "stream": True})
    assert response.status_code == 200
    events = sse_events(response.text)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[-2]["error"]["message"].endswith("after the first token")
    assert events[-1] == "[DONE]"  # clients that wait for [DONE] do not hang


# -- capabilities --------------------------------------------------------------------------------------------------


def _models(*ids: str, extra: str = "") -> str:
    return "".join(f'[[models]]\nid = "{i}"\nprovider = "echo"\n{extra}' for i in ids)


class LimitedEcho:
    """An in-test plugin: a provider whose models can only chat, with no optional parameters."""

    name = "limited"

    from heylook_core import hookimpl

    @hookimpl
    def register_providers(self, register: Any) -> None:
        from dataclasses import replace

        from heylook_core import Capability
        from heylook_echo.plugin import SPEC

        register(replace(SPEC, name="limited", capabilities=frozenset({Capability.CHAT}), parameters=frozenset()))


def test_missing_capability_and_parameter_are_400(make_client: Any) -> None:
    client = make_client('[[models]]\nid = "tiny"\nprovider = "limited"\n', plugins=[("limited", LimitedEcho())])
    error = assert_error(client.post("/v1/embeddings", json={"input": "x"}), 400, param="model")
    assert "tiny" in error["message"] and "embeddings" in error["message"]
    error = assert_error(client.post("/v1/completions", json={"prompt": "x"}), 400)
    assert "completion" in error["message"]
    error = assert_error(client.post("/v1/chat/completions", json={"messages": user("x"), "temperature": 0.5}), 400)
    assert error["param"] == "temperature" and "tiny" in error["message"]
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    error = assert_error(
        client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": [image]}]}), 400
    )
    assert "image" in error["message"]
    assert client.post("/v1/chat/completions", json={"messages": user("x")}).status_code == 200


def test_defaults_fill_unset_parameters(make_client: Any) -> None:
    text = '[defaults]\nmax_tokens = 4\n[[models]]\nid = "m"\nprovider = "echo"\n[models.defaults]\nstop = [" c"]\n'
    client = make_client(text)
    body = client.post("/v1/chat/completions", json={"messages": user("a b c d e f")}).json()
    assert body["choices"][0]["message"]["content"] == "a b"  # the model's stop applies
    body = client.post("/v1/chat/completions", json={"messages": user("x"), "stop": ["zz"]}).json()
    assert body["choices"][0]["message"]["content"] == "x lorem lorem lorem"  # the server's max_tokens applies
    assert body["choices"][0]["finish_reason"] == "length"


# -- other endpoints -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", [[], [[]], [[1], []]])
@pytest.mark.parametrize("stream", [False, True])
def test_empty_prompts_are_400(client: TestClient, prompt: Any, stream: bool) -> None:
    assert_error(client.post("/v1/completions", json={"prompt": prompt, "stream": stream}), 400, param="prompt")


def test_completions(client: TestClient) -> None:
    body = client.post("/v1/completions", json={"prompt": ["a b", "c"], "max_tokens": 3}).json()
    assert body["object"] == "text_completion"
    assert [c["text"] for c in body["choices"]] == ["a b lorem", "c lorem lorem"]
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["usage"]["completion_tokens"] == 6
    events = sse_events(
        client.post(
            "/v1/completions",
            json={"prompt": "a b", "max_tokens": 2, "stream": True, "stream_options": {"include_usage": True}},
        ).text
    )
    assert events[-1] == "[DONE]"
    assert events[-2]["usage"]["completion_tokens"] == 2
    assert "".join(e["choices"][0]["text"] for e in events[:-2]) == "a b"
    body = client.post("/v1/completions", json={"prompt": "a", "max_tokens": 2, "logprobs": 1}).json()
    assert body["choices"][0]["logprobs"]["tokens"] == ["a", " lorem"]


def test_embeddings_float_and_base64(client: TestClient) -> None:
    body = client.post("/v1/embeddings", json={"input": ["alpha", "beta"]}).json()
    assert body["object"] == "list"
    first, second = (item["embedding"] for item in body["data"])
    assert len(first) == 64
    assert abs(sum(v * v for v in first) - 1.0) < 1e-6
    assert first != second
    assert body["usage"]["prompt_tokens"] == 2
    encoded = client.post("/v1/embeddings", json={"input": "alpha", "encoding_format": "base64"}).json()
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert all(abs(a - b) < 1e-6 for a, b in zip(decoded, first, strict=True))
    assert_error(client.post("/v1/embeddings", json={"input": ""}), 400)
    assert_error(client.post("/v1/embeddings", json={"input": "x", "dimensions": 8}), 400, param="dimensions")


def test_hidden_states(client: TestClient) -> None:
    body = client.post("/v1/hidden_states", json={"input": ["a b c", "d"], "layer": -1}).json()
    assert body["shape"] == [[3, 16], [1, 16]]
    assert body["layer"] == 3
    assert len(body["hidden_states"][0]) == 3 and len(body["hidden_states"][0][0]) == 16
    encoded = client.post("/v1/hidden_states", json={"input": "a b c", "encoding_format": "base64"}).json()
    assert len(base64.b64decode(encoded["hidden_states"][0])) == 3 * 16 * 4
    assert_error(client.post("/v1/hidden_states", json={"input": "a", "layer": 9}), 400, param="layer")


def test_batch_chat(client: TestClient) -> None:
    requests = [{"messages": user("one")}, {"model": "echo", "messages": user("two three"), "max_tokens": 3}]
    body = client.post("/v1/batch/chat/completions", json={"model": "echo-small", "requests": requests}).json()
    assert body["object"] == "list"
    assert [d["choices"][0]["message"]["content"] for d in body["data"]] == ["one", "two three lorem"]
    assert [d["usage"]["completion_tokens"] for d in body["data"]] == [1, 3]
    assert_error(client.post("/v1/batch/chat/completions", json={"requests": []}), 400)
    bad = [{"messages": user("x"), "stream": True}]
    assert_error(client.post("/v1/batch/chat/completions", json={"requests": bad}), 400)


def test_tokenize(client: TestClient) -> None:
    body = client.post("/v1/tokenize", json={"input": "a b c", "add_special_tokens": False}).json()
    assert body["count"] == 3 and len(body["tokens"]) == 3


def test_health_plugins_metrics(client: TestClient) -> None:
    client.post("/v1/chat/completions", json={"messages": user("x")})
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["loaded"] == ["echo-small"]
    report = client.get("/-/plugins").json()
    echo = next(p for p in report["plugins"] if p["name"] == "echo")
    assert echo["status"] == "loaded" and echo["distribution"] == "heylook-echo"
    assert "register_providers" in echo["hooks"]
    assert report["python"]["executable"]
    metrics = client.get("/metrics").text
    assert 'heylook_model_loaded{model="echo-small"} 1.0' in metrics
    assert 'path="/v1/chat/completions",status="200"' in metrics


def test_api_key(make_client: Any) -> None:
    client = make_client('[server]\napi_keys = ["k1", "k2"]\n' + _models("m"))
    assert_error(client.get("/v1/models"), 401, code="missing_api_key")
    assert_error(client.get("/v1/models", headers={"Authorization": "Bearer nope"}), 401, code="invalid_api_key")
    assert client.get("/v1/models", headers={"Authorization": "Bearer k2"}).status_code == 200
    assert client.get("/health").status_code == 200  # operations stay open


def test_admin_routes(make_client: Any) -> None:
    client = make_client(_models("m"))
    assert_error(client.post("/v1/admin/models/m/load"), 404)
    client = make_client('[server]\nadmin_key = "root"\n' + _models("m"))
    assert_error(client.post("/v1/admin/models/m/load"), 401)
    assert_error(client.post("/v1/admin/models/m/load", headers={"Authorization": "Bearer x"}), 403)
    admin = {"Authorization": "Bearer root"}
    assert client.post("/v1/admin/models/m/load", headers=admin).json() == {"id": "m", "state": "loaded"}
    assert client.post("/v1/admin/models/m/unload", headers=admin).json() == {"id": "m", "state": "unloaded"}


def test_load_failure_is_reported_and_other_models_serve(make_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    text = _models("good") + (
        '[[models]]\nid = "bad"\nprovider = "echo"\n[models.config]\n'
        'fail_load = "cannot open /secret/path/weights.gguf"\n'
    )
    client = make_client(text)
    error = assert_error(client.post("/v1/chat/completions", json={"model": "bad", "messages": user("x")}), 503)
    assert error["code"] == "model_load_failed"
    # the client gets the model id and a reason class; the backend's text (a file path here) stays in the log
    assert "'bad'" in error["message"] and "RuntimeError" in error["message"]
    assert "/secret" not in error["message"]
    assert any("/secret/path/weights.gguf" in record.getMessage() for record in caplog.records)
    assert client.post("/v1/chat/completions", json={"model": "good", "messages": user("x")}).status_code == 200


def test_admin_reload_keeps_unchanged_models(make_client: Any, write_config: Any) -> None:
    head = '[server]\nadmin_key = "root"\n'
    client = make_client(head + _models("m"))
    admin = {"Authorization": "Bearer root"}
    assert client.post("/v1/chat/completions", json={"model": "m", "messages": user("x")}).status_code == 200
    write_config(head + _models("m", "n"))  # the same file the client's server reads
    assert client.post("/v1/admin/reload", headers=admin).json() == {"models": ["m", "n"], "dropped": []}
    assert client.get("/health").json()["loaded"] == ["m"]  # m stayed loaded
    assert client.post("/v1/chat/completions", json={"model": "n", "messages": user("y")}).status_code == 200
    write_config(head + _models("n") + '[[models]]\nid = "m"\nprovider = "echo"\n[models.config]\nfiller = " ha"\n')
    assert client.post("/v1/admin/reload", headers=admin).json()["dropped"] == ["m"]
    body = client.post("/v1/chat/completions", json={"model": "m", "messages": user("x"), "max_tokens": 2}).json()
    assert body["choices"][0]["message"]["content"] == "x ha"
    write_config(head + '[[models]]\nid = "m"\nprovider = "echo"\ncolour = 1\n')
    error = assert_error(client.post("/v1/admin/reload", headers=admin), 400, code="invalid_config")
    assert "colour" in error["message"]
    assert client.get("/v1/models").json()["data"][0]["id"] == "n"  # the old configuration still serves


def test_cors_off_by_default_and_on_for_listed_origins(make_client: Any) -> None:
    preflight = {"Origin": "http://ui.local", "Access-Control-Request-Method": "POST"}
    client = make_client(_models("m"))
    assert "access-control-allow-origin" not in client.options("/v1/chat/completions", headers=preflight).headers
    client = make_client('[server]\ncors_origins = ["http://ui.local"]\n' + _models("m"))
    response = client.options("/v1/chat/completions", headers=preflight)
    assert response.headers["access-control-allow-origin"] == "http://ui.local"
    other = client.options("/v1/chat/completions", headers={**preflight, "Origin": "http://evil.local"})
    assert "access-control-allow-origin" not in other.headers


def test_multipart_chat_with_uploaded_images(make_client: Any) -> None:
    client = make_client()
    png = ("cat.png", b"\x89PNG fake bytes", "image/png")
    request = json.dumps({"messages": user("describe"), "max_tokens": 3})
    response = client.post("/v1/chat/completions/multipart", data={"request": request}, files=[("images", png)] * 2)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "[2 images] describe"
    referenced = json.dumps(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "this"},
                        {"type": "image_url", "image_url": {"url": "upload:cat.png"}},
                    ],
                }
            ]
        }
    )
    response = client.post("/v1/chat/completions/multipart", data={"request": referenced}, files=[("images", png)])
    assert response.json()["choices"][0]["message"]["content"] == "[1 image] this"
    streamed = json.dumps({"messages": user("go"), "stream": True})
    events = sse_events(
        client.post("/v1/chat/completions/multipart", data={"request": streamed}, files=[("images", png)]).text
    )
    assert events[-1] == "[DONE]"
    text = ("notes.txt", b"hello", "text/plain")
    error = assert_error(
        client.post("/v1/chat/completions/multipart", data={"request": request}, files=[("images", text)]), 400
    )
    assert "not an image" in error["message"]
    assert_error(client.post("/v1/chat/completions/multipart", data={"request": "{not json"}), 400)
    assert_error(client.post("/v1/chat/completions/multipart", data={"request": json.dumps({"messages": []})}), 400)
    dangling = json.dumps(
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "upload:3"}}]}]}
    )
    assert_error(client.post("/v1/chat/completions/multipart", data={"request": dangling}), 400)
