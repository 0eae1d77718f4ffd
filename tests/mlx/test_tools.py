"""Tool calling on MLX: a tiny random model whose tokenizer carries a Qwen-style tool template.

The tokenizer has one added token that is a whole call, ``<tool_call>{...}</tool_call>``; ``logit_bias`` steers the
random model into it, and the core's parser (chosen from the template) reads it back, streamed and not. A stop
sequence on the closing tag leaves a call without it, which the parser repairs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from heylook_core.testing import serve, write_config
from heylook_mlx.tiny import build_text_model
from tests.mlx.conftest import ENV

TEMPLATE = (
    "{%- if tools %}<|im_start|>system\nTools:\n{%- for tool in tools %}\n{{ tool | tojson }}{%- endfor %}\n"
    'Call one as <tool_call>{"name": ..., "arguments": ...}</tool_call><|im_end|>\n{%- endif %}'
    "{%- for message in messages %}"
    "{%- if message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant"
    "{%- for tool_call in message.tool_calls %}{%- set tool_call = tool_call.function %}\n<tool_call>\n"
    '{"name": "{{ tool_call.name }}", "arguments": {{ tool_call.arguments | tojson }}}\n</tool_call>'
    "{%- endfor %}<|im_end|>\n"
    "{%- elif message.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ message.content }}\n</tool_response>"
    "<|im_end|>\n"
    "{%- else %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)
CALL = '<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>'
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def tool_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_text_model(tmp_path_factory.mktemp("tiny-tools"), chat_template=TEMPLATE, extra_special=[CALL])


@pytest.fixture(scope="module")
def call_id(tool_model: Path) -> str:
    tokenizer = json.loads((tool_model / "tokenizer.json").read_text())
    return str(next(token["id"] for token in tokenizer["added_tokens"] if token["content"] == CALL))


@pytest.fixture(scope="module")
def sdk(tool_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    folder = tmp_path_factory.mktemp("tools-server")
    plain = build_text_model(folder / "tiny-plain")  # the default template, which renders no tools
    config = f"""\
default_model = "tiny-tools"
[[models]]
id = "tiny-tools"
provider = "mlx"
[models.config]
model_path = "{tool_model}"

[[models]]
id = "tiny-plain"
provider = "mlx"
[models.config]
model_path = "{plain}"
"""
    with serve(write_config(folder, config), env=ENV, cwd=folder) as process:
        yield openai.OpenAI(base_url=process.base_url, api_key="unused", max_retries=0)


def _steered(sdk: openai.OpenAI, call_id: str, **kwargs: Any) -> Any:
    base: dict[str, Any] = {
        "model": "tiny-tools",
        "messages": ASK,
        "tools": TOOLS,
        "temperature": 0,
        "logit_bias": {call_id: 100},
        "max_tokens": 2,
    }
    return sdk.chat.completions.create(**{**base, **kwargs})


def test_steered_calls_are_parsed(sdk: openai.OpenAI, call_id: str) -> None:
    choice = _steered(sdk, call_id).choices[0]
    calls = [(call.function.name, json.loads(call.function.arguments)) for call in choice.message.tool_calls]
    assert calls == [("get_weather", {"city": "Paris"})] * 2  # two tokens, two calls, each with its own index
    assert not choice.message.content and choice.finish_reason == "length"


def test_stop_on_the_closing_tag_leaves_a_call_that_is_repaired(sdk: openai.OpenAI, call_id: str) -> None:
    choice = _steered(sdk, call_id, stop=["</tool_call>"]).choices[0]
    assert [call.function.name for call in choice.message.tool_calls] == ["get_weather"]
    assert choice.finish_reason == "tool_calls"


def test_streamed_calls_accumulate_to_the_same_calls(sdk: openai.OpenAI, call_id: str) -> None:
    whole = _steered(sdk, call_id, parallel_tool_calls=False).choices[0].message.tool_calls
    calls: dict[int, dict[str, str]] = {}
    for chunk in _steered(sdk, call_id, parallel_tool_calls=False, stream=True):
        for fragment in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(fragment.index, {"name": "", "arguments": ""})
            call["name"] += (fragment.function and fragment.function.name) or ""
            call["arguments"] += (fragment.function and fragment.function.arguments) or ""
    assert len(whole) == 1  # parallel_tool_calls = false keeps the first
    assert [(c["name"], json.loads(c["arguments"])) for c in calls.values()] == [
        (whole[0].function.name, json.loads(whole[0].function.arguments))
    ]


def test_tools_and_a_tool_result_render(sdk: openai.OpenAI) -> None:
    plain = sdk.chat.completions.create(model="tiny-tools", messages=ASK, max_tokens=1)
    with_tools = sdk.chat.completions.create(model="tiny-tools", messages=ASK, tools=TOOLS, max_tokens=1)
    assert with_tools.usage.prompt_tokens > plain.usage.prompt_tokens  # the template rendered the tools
    history: list[Any] = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny and warm"},
    ]
    answer = sdk.chat.completions.create(model="tiny-tools", messages=history, tools=TOOLS, max_tokens=3)
    assert answer.usage.prompt_tokens > with_tools.usage.prompt_tokens
    assert answer.choices[0].finish_reason in {"length", "stop", "tool_calls"}


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_forced_tool_choice_is_refused(sdk: openai.OpenAI, choice: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="tiny-tools", messages=ASK, tools=TOOLS, tool_choice=choice, max_tokens=1)
    assert "tool_choice" in str(caught.value)


def test_a_template_without_tools_refuses_them_and_its_card_offers_none(sdk: openai.OpenAI) -> None:
    assert {"tools", "tool_choice"} <= set(sdk.models.retrieve("tiny-plain").model_dump()["parameters"])  # declared
    # the first request loads the model and is refused once the load shows it; the second before the model is reached
    for _ in range(2):
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.chat.completions.create(model="tiny-plain", messages=ASK, tools=TOOLS, max_tokens=1)
        assert "does not render tools" in str(caught.value)
        assert caught.value.param == "tools"
    parameters = set(sdk.models.retrieve("tiny-plain").model_dump()["parameters"])
    assert not {"tools", "tool_choice"} & parameters
    assert "temperature" in parameters
    answer = sdk.chat.completions.create(model="tiny-plain", messages=ASK, max_tokens=1)
    assert answer.choices[0].finish_reason in {"length", "stop"}
    assert {"tools", "tool_choice"} <= set(sdk.models.retrieve("tiny-tools").model_dump()["parameters"])
