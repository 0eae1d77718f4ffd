"""Tool calls read out of a model's text by the core (``tool_parser``), through a real server and the openai SDK.

The echo model with ``tool_text = true`` writes the user's message as its output, tags and all, so a message in a
model's tool-call format stands for that model's output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from heylook_core.testing import ServerProcess, serve

CONFIG = """\
default_model = "hermes"
[[models]]
id = "hermes"
provider = "echo"
tool_parser = "qwen"
[models.config]
tool_text = true
[[models]]
id = "harmony"
provider = "echo"
tool_parser = "harmony"
[models.config]
tool_text = true
[[models]]
id = "plain"
provider = "echo"
[models.config]
tool_text = true
"""

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]
TWO_CALLS = (
    'Checking both. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris",}}\n</tool_call>\n'
    "<tool_call>{'name': 'get_time', 'arguments': {}}</tool_call>"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    path = tmp_path_factory.mktemp("toolcalls") / "models.toml"
    path.write_text(CONFIG)
    data = tmp_path_factory.mktemp("toolcalls-data")
    with serve(path, env={"HEYLOOK_LOAD_PLUGINS": "echo", "XDG_DATA_HOME": str(data)}) as process:
        yield process


@pytest.fixture
def client(server: ServerProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as sdk:
        yield sdk


def _calls(calls: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(call.function.name, json.loads(call.function.arguments)) for call in calls or []]


EXPECTED = [("get_weather", {"city": "Paris"}), ("get_time", {})]


def test_calls_parsed_without_streaming(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="hermes", messages=[{"role": "user", "content": TWO_CALLS}], tools=TOOLS
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert _calls(choice.message.tool_calls) == EXPECTED
    assert choice.message.content.strip() == "Checking both."
    assert len({call.id for call in choice.message.tool_calls}) == 2


def test_streamed_calls_accumulate_to_the_same_calls(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="hermes", messages=[{"role": "user", "content": TWO_CALLS}], tools=TOOLS, stream=True
    )
    content, finish = "", None
    calls: dict[int, dict[str, str]] = {}
    fragments = 0
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for fragment in delta.tool_calls or []:
            fragments += 1
            call = calls.setdefault(fragment.index, {"id": "", "name": "", "arguments": ""})
            if fragment.id:
                assert not call["id"] and fragment.function.name  # id and name come first, once
                call["id"] = fragment.id
            call["name"] += (fragment.function and fragment.function.name) or ""
            call["arguments"] += (fragment.function and fragment.function.arguments) or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert [(c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())] == EXPECTED
    assert "<tool_call>" not in content and "</tool_call>" not in content
    assert content.strip() == "Checking both."
    assert fragments > 2  # names first, then the arguments in pieces


def test_parallel_tool_calls_false(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="hermes", messages=[{"role": "user", "content": TWO_CALLS}], tools=TOOLS, parallel_tool_calls=False
    )
    assert _calls(response.choices[0].message.tool_calls) == EXPECTED[:1]


def test_tool_choice_none_reads_no_calls(client: openai.OpenAI) -> None:
    text = "plain <b>answer</b>"
    response = client.chat.completions.create(
        model="hermes", messages=[{"role": "user", "content": text}], tools=TOOLS, tool_choice="none"
    )
    assert response.choices[0].message.content == text and not response.choices[0].message.tool_calls
    assert response.choices[0].finish_reason == "stop"


def test_unparsable_call_comes_back_as_text_not_an_error(client: openai.OpenAI) -> None:
    text = "<tool_call>I would call get_weather here</tool_call>"
    response = client.chat.completions.create(model="hermes", messages=[{"role": "user", "content": text}], tools=TOOLS)
    choice = response.choices[0]
    assert choice.message.content == "I would call get_weather here" and not choice.message.tool_calls
    assert choice.finish_reason == "stop"


def test_a_model_without_a_parser_passes_text_through(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="plain", messages=[{"role": "user", "content": TWO_CALLS}], tools=TOOLS
    )
    assert response.choices[0].message.content == TWO_CALLS


def test_harmony_channels(client: openai.OpenAI) -> None:
    text = (
        "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary "
        'to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}<|call|>'
    )
    response = client.chat.completions.create(
        model="harmony", messages=[{"role": "user", "content": text}], tools=TOOLS
    )
    message = response.choices[0].message
    assert _calls(message.tool_calls) == EXPECTED[:1]
    assert not message.content
    assert getattr(message, "reasoning_content", None) == "Need weather."


def test_responses_api_function_calls(client: openai.OpenAI) -> None:
    tools: list[Any] = [{"type": "function", **tool["function"]} for tool in TOOLS]
    response = client.responses.create(model="hermes", input=TWO_CALLS, tools=tools)
    calls = [(item.name, json.loads(item.arguments)) for item in response.output if item.type == "function_call"]
    assert calls == EXPECTED
    with client.responses.stream(model="hermes", input=TWO_CALLS, tools=tools) as stream:
        final = stream.get_final_response()
    streamed = [(item.name, json.loads(item.arguments)) for item in final.output if item.type == "function_call"]
    assert streamed == EXPECTED


def test_a_call_inside_reasoning_is_not_a_call(client: openai.OpenAI) -> None:
    text = '<think>maybe <tool_call>{"name": "get_time", "arguments": {}}</tool_call></think>No call needed.'
    response = client.chat.completions.create(model="hermes", messages=[{"role": "user", "content": text}], tools=TOOLS)
    message = response.choices[0].message
    assert message.content == "No call needed." and not message.tool_calls
    assert "<tool_call>" in message.model_extra["reasoning_content"]
    assert response.choices[0].finish_reason == "stop"
