"""Anthropic's Messages API end to end: `heylookllm serve` (echo) driven by the official anthropic SDK.

The echo model answers with the last user message; ``max_tokens`` (required by this API) pads the answer with
"lorem" up to that many tokens and ends it with ``stop_reason: "max_tokens"``, so most tests ask for exactly as many
tokens as the echo has words.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from heylook_core.testing import ServerProcess, serve

CONFIG = """\
default_model = "echo-small"
[server]
max_body_bytes = 1048576
[[models]]
id = "echo-small"
provider = "echo"
aliases = ["echo"]
[[models]]
id = "slow"
provider = "echo"
[models.config]
token_delay_ms = 30
"""
KEY = "sk-heylook-test"


class _AnyMessage(str):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(other)

    __hash__ = str.__hash__


ANY_MESSAGE = _AnyMessage()
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a place",
    "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}


def _png(width: int, height: int) -> bytes:
    """A PNG header of ``width`` x ``height`` (the echo model never decodes it)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def _serve(root: Path, config: str, env: dict[str, str] | None = None) -> Any:
    (root / "models.toml").write_text(config)
    environment = {"HEYLOOK_LOAD_PLUGINS": "echo", "XDG_DATA_HOME": str(root), **(env or {})}
    return serve(root / "models.toml", env=environment)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with _serve(tmp_path_factory.mktemp("anthropic"), CONFIG) as process:
        yield process


@pytest.fixture
def client(server: ServerProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0) as sdk:
        yield sdk


def test_message(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="echo", max_tokens=2, messages=[{"role": "user", "content": "hello messages"}]
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == "echo"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "hello messages"
    assert message.stop_reason == "max_tokens" and message.stop_sequence is None
    assert message.usage.output_tokens == 2 and message.usage.input_tokens > 0
    assert message.usage.cache_read_input_tokens == 0 and message.usage.cache_creation_input_tokens == 0


def test_max_tokens_pads_and_blocks_as_content(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="echo",
        max_tokens=4,
        messages=[{"role": "user", "content": [{"type": "text", "text": "two words"}]}],
        extra_body={"temperature": 0.5, "top_p": 0.9, "top_k": 20},  # older SDKs have them as arguments
        metadata={"user_id": "someone"},
        service_tier="auto",
    )
    assert message.content[0].text == "two words lorem lorem"
    assert message.stop_reason == "max_tokens"


def test_streamed_message(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="echo", max_tokens=3, messages=[{"role": "user", "content": "stream these words"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "stream these words"
    assert final.content[0].type == "text" and final.content[0].text == "stream these words"
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 3 and final.usage.input_tokens > 0


def test_stream_event_sequence(client: anthropic.Anthropic) -> None:
    events = list(
        client.messages.create(
            model="echo", max_tokens=2, stream=True, messages=[{"role": "user", "content": "two events"}]
        )
    )
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[1] == "content_block_start"
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert events[0].message.usage.output_tokens == 0
    assert events[-2].delta.stop_reason == "max_tokens" and events[-2].usage.output_tokens == 2


def test_system_as_string_and_blocks(client: anthropic.Anthropic) -> None:
    def input_tokens(**extra: Any) -> int:
        message = client.messages.create(
            model="echo", max_tokens=2, messages=[{"role": "user", "content": "count me"}], **extra
        )
        assert message.content[0].text == "count me"
        return message.usage.input_tokens

    plain = input_tokens()
    as_string = input_tokens(system="you are terse")
    as_blocks = input_tokens(
        system=[
            {"type": "text", "text": "you are terse"},
            {"type": "text", "text": "and kind", "cache_control": {"type": "ephemeral"}},
        ]
    )
    assert plain < as_string < as_blocks


def test_tool_use_and_tool_result_round_trip(client: anthropic.Anthropic) -> None:
    question = {"role": "user", "content": "weather in Paris?"}
    first = client.messages.create(model="echo", max_tokens=64, messages=[question], tools=[WEATHER])
    assert first.stop_reason == "tool_use"
    call = first.content[-1]
    assert call.type == "tool_use" and call.id.startswith("toolu_")
    assert call.name == "get_weather" and call.input == {"text": "weather in Paris?"}
    second = client.messages.create(
        model="echo",
        max_tokens=4,
        tools=[WEATHER],
        messages=[
            question,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
        ],
    )
    assert second.stop_reason == "max_tokens"
    assert second.content[0].text == "the tool said: sunny"


def test_tool_result_error_blocks(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="echo",
        max_tokens=6,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"text": "x"}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "is_error": True,
                        "content": [{"type": "text", "text": "no network"}],
                    }
                ],
            },
        ],
    )
    assert message.content[0].text == "the tool said: Error: no network"


def test_streamed_tool_use(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="echo",
        max_tokens=64,
        messages=[{"role": "user", "content": "weather?"}],
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert any(e.type == "content_block_delta" and e.delta.type == "input_json_delta" for e in events)
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use" and final.content[0].input == {"text": "weather?"}


def test_tool_choice_none_answers_in_text(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="echo",
        max_tokens=1,
        messages=[{"role": "user", "content": "hi"}],
        tools=[WEATHER],
        tool_choice={"type": "none"},
    )
    assert message.content[0].type == "text" and message.content[0].text == "hi"


def test_thinking_blocks(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="echo",
        max_tokens=16,
        messages=[{"role": "user", "content": "think about it"}],
        thinking={"type": "enabled", "budget_tokens": 8},
    )
    kinds = [block.type for block in message.content]
    assert kinds == ["thinking", "text"]
    assert message.content[0].thinking == "The user wrote 3 words."
    assert message.content[0].signature
    assert message.content[1].text.startswith("think about it")
    with client.messages.stream(
        model="echo",
        max_tokens=16,
        messages=[{"role": "user", "content": "think about it"}],
        thinking={"type": "enabled", "budget_tokens": 8},
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    deltas = {e.delta.type for e in events if e.type == "content_block_delta"}
    assert {"thinking_delta", "signature_delta", "text_delta"} <= deltas
    assert final.content[0].type == "thinking" and final.content[0].thinking == "The user wrote 3 words."
    assert final.content[0].signature == message.content[0].signature
    # the thinking goes back as history
    again = client.messages.create(
        model="echo",
        max_tokens=2,
        messages=[
            {"role": "user", "content": "think about it"},
            {"role": "assistant", "content": final.content},
            {"role": "user", "content": "and now"},
        ],
        thinking={"type": "disabled"},
    )
    assert [block.type for block in again.content] == ["text"] and again.content[0].text == "and now"


def test_stop_sequences(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="echo",
        max_tokens=16,
        messages=[{"role": "user", "content": "one two STOP three"}],
        stop_sequences=["STOP"],
    )
    assert message.content[0].text == "one two "
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "STOP"
    with client.messages.stream(
        model="echo",
        max_tokens=16,
        messages=[{"role": "user", "content": "one two STOP three"}],
        stop_sequences=["nowhere", "TWO", "two"],
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "one "
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == "two"


def test_count_tokens(client: anthropic.Anthropic) -> None:
    short = client.messages.count_tokens(model="echo", messages=[{"role": "user", "content": "hello"}])
    longer = client.messages.count_tokens(
        model="echo",
        system="be brief",
        messages=[{"role": "user", "content": "hello there you"}],
        tools=[WEATHER],
    )
    assert 0 < short.input_tokens < longer.input_tokens


def test_models_list(client: anthropic.Anthropic) -> None:
    page = client.models.list()
    ids = [model.id for model in page.data]
    assert "echo-small" in ids and "slow" in ids
    assert all(model.type == "model" for model in page.data)
    assert page.data[0].display_name
    assert page.data[0].created_at.year >= 2024


def test_unknown_model_is_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "not_found_error"
    assert "echo-small" in body["error"]["message"]


def test_max_tokens_missing_is_a_400(server: ServerProcess) -> None:
    response = httpx.post(
        server.url + "/v1/messages",
        json={"model": "echo", "messages": [{"role": "user", "content": "x"}]},
        headers={"anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "web_search_20250305"),
        ({"extra_body": {"unknown_field": 1}}, "unknown_field"),
        ({"extra_body": {"temperature": 1.5}}, "temperature"),
        ({"tool_choice": {"type": "tool", "name": "nope"}, "tools": [WEATHER]}, "tool_choice"),
        ({"extra_body": {"mcp_servers": [{"type": "url", "url": "http://x", "name": "x"}]}}, "mcp_servers"),
        ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "pre"}]}, "prefill"),
        ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}, "document"),
    ],
)
def test_refused_fields_are_anthropic_400s(client: anthropic.Anthropic, extra: dict[str, Any], where: str) -> None:
    params: dict[str, Any] = {"model": "echo", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}
    params.update(extra)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(**params)
    body = caught.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "invalid_request_error"
    assert where in body["error"]["message"]


def test_error_before_the_first_token_keeps_its_status(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.InternalServerError) as caught:
        with client.messages.stream(model="echo", max_tokens=4, messages=[{"role": "user", "content": "!error"}]):
            pass
    assert caught.value.status_code == 500
    assert caught.value.body["error"]["type"] == "api_error"


def test_error_mid_stream_is_an_error_event(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        with client.messages.stream(
            model="echo", max_tokens=4, messages=[{"role": "user", "content": "!midstream-error now"}]
        ) as stream:
            for _ in stream:
                pass
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == "api_error"
    assert "scripted failure" in body["error"]["message"]


def test_images_base64(client: anthropic.Anthropic) -> None:
    data = base64.b64encode(_png(4, 4)).decode()
    message = client.messages.create(
        model="echo",
        max_tokens=3,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
                    {"type": "text", "text": "what is this"},
                ],
            }
        ],
    )
    assert message.content[0].text.startswith("[1 image] what")


def test_wire_frames_name_their_event(server: ServerProcess) -> None:
    """Each SSE frame has an ``event:`` line with the type its data holds, in Anthropic's order."""
    with httpx.stream(
        "POST",
        server.url + "/v1/messages",
        json={"model": "slow", "max_tokens": 2, "stream": True, "messages": [{"role": "user", "content": "a b"}]},
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    data = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert [item["type"] for item in data] == events


# -- auth and the opt-in fallback model ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = CONFIG.replace('default_model = "echo-small"\n[server]\nmax_body_bytes = 1048576\n', "") + "\n"
    config = f'[server]\napi_keys = ["{KEY}"]\nanthropic_default_model = "echo-small"\nmax_queue = 0\n' + config
    with _serve(tmp_path_factory.mktemp("anthropic-keyed"), config) as process:
        yield process


def test_x_api_key_is_accepted(keyed: ServerProcess) -> None:
    body = {"model": "echo-small", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    ok = httpx.post(keyed.url + "/v1/messages", json=body, headers={"x-api-key": KEY})
    assert ok.status_code == 200 and ok.json()["content"][0]["text"] == "hi"
    # on the OpenAI routes too
    models = httpx.get(keyed.url + "/v1/models", headers={"x-api-key": KEY})
    assert models.status_code == 200
    with anthropic.Anthropic(base_url=keyed.url, api_key=KEY, max_retries=0) as sdk:
        assert sdk.messages.create(**body).content[0].text == "hi"
    with anthropic.Anthropic(
        base_url=keyed.url, auth_token=None, api_key=None, default_headers={"x-api-key": KEY}, max_retries=0
    ) as sdk:
        assert sdk.messages.create(**body).content[0].text == "hi"


def test_a_wrong_key_is_an_anthropic_401(keyed: ServerProcess) -> None:
    with anthropic.Anthropic(base_url=keyed.url, api_key="wrong", max_retries=0) as sdk:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            sdk.messages.create(model="echo-small", max_tokens=1, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["error"]["type"] == "authentication_error"
    missing = httpx.post(keyed.url + "/v1/messages", json={})
    assert missing.status_code == 401 and missing.json()["type"] == "error"
    openai_shape = httpx.get(keyed.url + "/v1/models", headers={"x-api-key": "wrong"})
    assert openai_shape.status_code == 401 and "type" not in openai_shape.json()  # OpenAI routes keep their shape


def test_fallback_model_answers_unknown_names(keyed: ServerProcess) -> None:
    with anthropic.Anthropic(base_url=keyed.url, api_key=KEY, max_retries=0) as sdk:
        message = sdk.messages.create(
            model="claude-sonnet-4-5", max_tokens=1, messages=[{"role": "user", "content": "hi"}]
        )
        assert message.model == "claude-sonnet-4-5" and message.content[0].text == "hi"
        count = sdk.messages.count_tokens(model="claude-opus-4", messages=[{"role": "user", "content": "hi"}])
        assert count.input_tokens > 0
    # only on the Messages route: Chat Completions still says the model is not there
    chat = httpx.post(
        keyed.url + "/v1/chat/completions",
        json={"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert chat.status_code == 404


def test_a_full_queue_is_a_529_overloaded_error(keyed: ServerProcess) -> None:
    busy = {"model": "slow", "max_tokens": 1000, "stream": True, "messages": [{"role": "user", "content": "hold"}]}
    with httpx.stream("POST", keyed.url + "/v1/messages", json=busy, headers={"x-api-key": KEY}) as held:
        assert held.status_code == 200
        lines = held.iter_lines()  # kept: a dropped iterator closes the response
        next(lines)  # the slow model is busy for 30 s (until this stream closes), and max_queue = 0
        with anthropic.Anthropic(base_url=keyed.url, api_key=KEY, max_retries=0) as sdk:
            with pytest.raises(anthropic.OverloadedError) as caught:
                sdk.messages.create(model="slow", max_tokens=1, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"
    assert caught.value.response.headers.get("retry-after") == "1"


def test_thinking_display_omitted_and_adaptive(client: anthropic.Anthropic) -> None:
    omitted = client.messages.create(
        model="echo",
        max_tokens=16,
        messages=[{"role": "user", "content": "think about it"}],
        thinking={"type": "enabled", "budget_tokens": 8, "display": "omitted"},
    )
    assert [block.type for block in omitted.content] == ["thinking", "text"]
    assert omitted.content[0].thinking == "" and omitted.content[0].signature
    adaptive = client.messages.create(
        model="echo",
        max_tokens=3,
        messages=[{"role": "user", "content": "think about it"}],
        thinking={"type": "adaptive"},
    )
    assert [block.type for block in adaptive.content] == ["text"]  # the model's own default: the echo does not think


def test_budget_tokens_below_max_tokens(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="echo",
            max_tokens=16,
            messages=[{"role": "user", "content": "x"}],
            thinking={"type": "enabled", "budget_tokens": 16},
        )
    assert "budget_tokens" in caught.value.body["error"]["message"]


def test_output_config_json_schema(client: anthropic.Anthropic) -> None:
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}
    message = client.messages.create(
        model="echo",
        max_tokens=2,
        messages=[{"role": "user", "content": "structured"}],
        extra_body={"output_config": {"format": {"type": "json_schema", "schema": schema}}},
    )
    assert json.loads(message.content[0].text) == {"echo": "structured"}


def test_tool_arguments_that_are_not_json_fail_honestly() -> None:
    from heylook_core.errors import HeylookError
    from heylook_core.protocols.anthropic import MessageBuilder
    from heylook_core.types import Delta, Usage

    builder = MessageBuilder("m", stream=True)
    start = builder.start()
    assert start.startswith(b"event: message_start\n")
    call = {"index": 0, "id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}
    frames = builder.feed(Delta(tool_calls=[call], finish_reason="tool_calls", usage=Usage(1, 1)))
    assert b'"type":"tool_use"' in frames and b"input_json_delta" in frames
    with pytest.raises(HeylookError, match="not a JSON object"):
        builder.finish()
    empty = MessageBuilder("m", stream=False)
    empty.feed(Delta(tool_calls=[dict(call, function={"name": "f", "arguments": ""})], finish_reason="tool_calls"))
    empty.finish()
    assert empty.message["content"][0]["input"] == {} and empty.message["stop_reason"] == "tool_use"


def test_checks_before_routing_answer_in_anthropic_shape(server: ServerProcess) -> None:
    body = {"model": "echo", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}
    foreign = httpx.post(server.url + "/v1/messages", json=body, headers={"Origin": "https://attacker.example"})
    assert foreign.status_code == 403
    assert foreign.json() == {"type": "error", "error": {"type": "permission_error", "message": ANY_MESSAGE}}
    huge = httpx.post(server.url + "/v1/messages", json=dict(body, system="x" * (2 * 1024 * 1024)))
    assert huge.status_code == 413 and huge.json()["error"]["type"] == "request_too_large"
    openai = httpx.post(server.url + "/v1/chat/completions", json=body, headers={"Origin": "https://attacker.example"})
    assert openai.status_code == 403 and openai.json()["error"]["type"] == "permission_error"  # OpenAI's shape
