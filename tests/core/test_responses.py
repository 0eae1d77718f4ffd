"""The Responses API end to end: `heylookllm serve` (echo) driven by the official openai SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pydantic
import pytest

from heylook_core.testing import ServerProcess, serve
from tests.core.conftest import EXAMPLE

CONFIG = EXAMPLE + '\n[[models]]\nid = "slow"\nprovider = "echo"\n[models.config]\ntoken_delay_ms = 30\n'
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a place",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}


@pytest.fixture(scope="module")
def data_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("responses-data")


def _serve(config: Path, data_home: Path) -> Any:
    return serve(config, env={"HEYLOOK_LOAD_PLUGINS": "echo", "XDG_DATA_HOME": str(data_home)})


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("responses") / "models.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def server(config: Path, data_home: Path) -> Iterator[ServerProcess]:
    with _serve(config, data_home) as process:
        yield process


@pytest.fixture
def client(server: ServerProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as sdk:
        yield sdk


def test_plain_text(client: openai.OpenAI) -> None:
    response = client.responses.create(model="echo", input="hello responses")
    assert response.output_text == "hello responses"
    assert response.status == "completed"
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.model == "echo"
    message = response.output[0]
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert response.usage is not None
    assert response.usage.output_tokens == 2 and response.usage.input_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0


def test_instructions_become_the_system_message(client: openai.OpenAI) -> None:
    plain = client.responses.create(model="echo", input="count me")
    instructed = client.responses.create(model="echo", input="count me", instructions="you are a terse assistant")
    assert instructed.output_text == "count me"
    assert instructed.instructions == "you are a terse assistant"
    assert plain.usage is not None and instructed.usage is not None
    assert instructed.usage.input_tokens > plain.usage.input_tokens  # the instructions reached the prompt


def test_input_items_with_roles(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="echo",
        input=[
            {"role": "developer", "content": "be brief"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "first question"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "an answer"}]},
            {"role": "user", "content": "second question"},
        ],
    )
    assert response.output_text == "second question"


def test_streamed_events_accumulate_to_the_same_response(client: openai.OpenAI) -> None:
    with client.responses.stream(model="echo", input="one two three") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert deltas == ["one", " two", " three"]  # token by token
    plain = client.responses.create(model="echo", input="one two three")
    assert final.output_text == plain.output_text == "one two three"
    assert final.status == "completed"
    assert final.usage is not None and plain.usage is not None
    assert final.usage.output_tokens == plain.usage.output_tokens


def test_max_output_tokens_gives_incomplete(client: openai.OpenAI) -> None:
    response = client.responses.create(model="echo", input="a b c d e f", max_output_tokens=3)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "a b c"
    with client.responses.stream(model="echo", input="a b c d e f", max_output_tokens=3) as stream:
        kinds = [event.type for event in stream]
    assert kinds[-1] == "response.incomplete"


def test_tool_call_and_function_call_output_round_trip(client: openai.OpenAI) -> None:
    first = client.responses.create(model="echo", input="weather in Paris?", tools=[WEATHER])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"text": "weather in Paris?"}
    assert call.call_id and call.status == "completed"
    second = client.responses.create(
        model="echo",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}],
        tools=[WEATHER],
    )
    assert second.output_text == "the tool said: sunny, 21 C"
    assert second.previous_response_id == first.id


def test_streamed_tool_call(client: openai.OpenAI) -> None:
    with client.responses.stream(model="echo", input="weather?", tools=[WEATHER]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    calls = [item for item in final.output if item.type == "function_call"]
    assert len(calls) == 1 and json.loads(calls[0].arguments) == {"text": "weather?"}
    pieces = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert pieces == calls[0].arguments


def test_the_whole_history_by_hand(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="echo",
        input=[
            {"role": "user", "content": "weather?"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"text": "x"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "rain"},
        ],
        tools=[WEATHER],
    )
    assert response.output_text == "the tool said: rain"


def test_json_schema_through_parse(client: openai.OpenAI) -> None:
    class Echoed(pydantic.BaseModel):
        echo: str

    response = client.responses.parse(model="echo", input="structured please", text_format=Echoed)
    assert response.output_parsed == Echoed(echo="structured please")


def test_reasoning_effort_maps_onto_thinking(client: openai.OpenAI) -> None:
    response = client.responses.create(model="echo", input="think about it", reasoning={"effort": "high"})
    kinds = [item.type for item in response.output]
    assert kinds == ["reasoning", "message"]
    reasoning = response.output[0]
    assert reasoning.content is not None and reasoning.content[0].text == "The user wrote 3 words."
    assert response.output_text == "think about it"
    assert response.usage is not None and response.usage.output_tokens_details.reasoning_tokens > 0
    with client.responses.stream(model="echo", input="think about it", reasoning={"effort": "high"}) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.reasoning_text.delta" in kinds
    assert [item.type for item in final.output] == ["reasoning", "message"]


def test_logprobs(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="echo", input="a b", top_logprobs=1, include=["message.output_text.logprobs"]
    )
    part = response.output[0].content[0]
    assert part.type == "output_text"
    assert [item.token for item in part.logprobs or []] == ["a", " b"]


def test_unknown_tool_type_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="echo", input="x", tools=[{"type": "web_search"}])
    assert "web_search" in caught.value.message
    body = caught.value.body
    assert isinstance(body, dict) and body.get("param") == "tools[0].type"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"truncation": "auto"}, "truncation"),
        ({"background": True}, "background"),
        ({"include": ["file_search_call.results"]}, "include[0]"),
        (
            {"input": [{"type": "message", "role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0].type",
        ),
        ({"tool_choice": {"type": "function", "name": "nope"}, "tools": [WEATHER]}, "tool_choice.name"),
        ({"not_a_parameter": 1}, "not_a_parameter"),
    ],
)
def test_parameters_that_change_the_output_are_refused(
    server: ServerProcess, extra: dict[str, Any], param: str
) -> None:
    body = {"model": "echo", "input": "x", **extra}
    reply = httpx.post(server.base_url + "/responses", json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param


def test_parameters_that_do_not_change_the_output_are_accepted(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="echo",
        input="kept",
        metadata={"k": "v"},
        user="someone",
        store=False,
        service_tier="auto",
        prompt_cache_key="abc",
        parallel_tool_calls=False,
        truncation="disabled",
    )
    assert response.output_text == "kept"
    assert response.metadata == {"k": "v"}
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)  # store = false keeps nothing


def test_unknown_previous_response_is_a_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="echo", input="x", previous_response_id="resp_nothing")
    assert "resp_nothing" in caught.value.message


def test_retrieve_input_items_and_delete(client: openai.OpenAI) -> None:
    response = client.responses.create(model="echo", input=[{"role": "user", "content": "stored"}])
    assert client.responses.retrieve(response.id).output_text == "stored"
    items = list(client.responses.input_items.list(response.id))
    assert [item.type for item in items] == ["message"]
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_a_stream_that_fails_after_its_first_token(client: openai.OpenAI) -> None:
    with client.responses.stream(model="echo", input="!midstream-error a b") as stream:
        kinds = [event.type for event in stream]
    assert kinds[-2:] == ["error", "response.failed"]


def test_an_error_before_the_first_token_keeps_its_status(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.responses.create(model="echo", input="!error now", stream=True)
    assert caught.value.status_code == 502


def test_unknown_model_is_a_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="gpt-nothing", input="x")


def test_chain_survives_a_restart(config: Path, tmp_path: Path) -> None:
    data_home = tmp_path / "data"
    with _serve(config, data_home) as first_server:
        with openai.OpenAI(base_url=first_server.base_url, api_key="unused", max_retries=0) as client:
            first = client.responses.create(model="echo", input="weather?", tools=[WEATHER])
        call = next(item for item in first.output if item.type == "function_call")
    assert (data_home / "heylook" / "responses.sqlite3").is_file()
    with _serve(config, data_home) as second_server:
        with openai.OpenAI(base_url=second_server.base_url, api_key="unused", max_retries=0) as client:
            assert client.responses.retrieve(first.id).output[0].type == "function_call"
            second = client.responses.create(
                model="echo",
                previous_response_id=first.id,
                input=[{"type": "function_call_output", "call_id": call.call_id, "output": "after the restart"}],
                tools=[WEATHER],
            )
    assert second.output_text == "the tool said: after the restart"
