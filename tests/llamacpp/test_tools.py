"""Tool calling on the real engine: the gemma GGUF with a tool-aware (Qwen-style) Jinja template from the config.

The template renders ``tools``, the assistant's calls and the tool results; ``tool_choice`` "required" or a named
function makes llama.cpp sample under a grammar of one ``<tool_call>`` in that format, which the core's parser reads
back: the call is the same through Chat Completions and the Responses API, streamed and not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from heylook_core.testing import ServerProcess, serve, write_config
from tests.llamacpp.conftest import THREADS

TEMPLATE = """{{ bos_token }}
{%- if tools %}<|im_start|>system
You can call these functions:
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
Call one as <tool_call>{"name": ..., "arguments": {...}}</tool_call>.<|im_end|>
{% endif %}
{%- for m in messages %}
{%- if m.role == "tool" %}<|im_start|>user
<tool_response>
{{ m.content }}
</tool_response><|im_end|>
{% elif m.role == "assistant" and m.tool_calls %}<|im_start|>assistant
{%- for c in m.tool_calls %}
<tool_call>
{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}
</tool_call>
{%- endfor %}<|im_end|>
{% else %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endif %}
{%- endfor %}<|im_start|>assistant
"""

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo", "Lima"]}},
        "required": ["city"],
    },
}
TIME = {"name": "get_time", "description": "The time now", "parameters": {"type": "object", "properties": {}}}
TOOLS: list[Any] = [{"type": "function", "function": WEATHER}, {"type": "function", "function": TIME}]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
NAMED: Any = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture(scope="module")
def tool_server(gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("tools")
    config = f"""\
default_model = "gemma-qwen-tools"

[[models]]
id = "gemma-qwen-tools"
provider = "llama_cpp"
[models.config]
model_path = "{gguf}"
n_ctx = 1024
n_threads = {THREADS}
chat_template = '''{TEMPLATE}'''

[[models]]
id = "gemma-no-tools"
provider = "llama_cpp"
[models.config]
model_path = "{gguf}"
n_ctx = 256
n_threads = {THREADS}
chat_template = "{{{{ bos_token }}}}{{% for m in messages %}}Q: {{{{ m.content }}}}\\n{{% endfor %}}A:"
"""
    path = write_config(folder, config)
    env = {"HEYLOOK_LOAD_PLUGINS": "llamacpp", "XDG_CONFIG_HOME": str(folder / "xdg"), "XDG_DATA_HOME": str(folder)}
    with serve(path, env=env, cwd=folder, timeout=120) as process:
        yield process


@pytest.fixture(scope="module")
def sdk(tool_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=tool_server.base_url, api_key="unused", max_retries=0, timeout=300)


def _create(sdk: openai.OpenAI, **kwargs: Any) -> Any:
    base: dict[str, Any] = {"model": "gemma-qwen-tools", "messages": ASK, "tools": TOOLS, "temperature": 0}
    return sdk.chat.completions.create(**{**base, "max_tokens": 48, **kwargs})


def test_named_tool_choice_gives_a_parsed_call(sdk: openai.OpenAI) -> None:
    response = _create(sdk, tool_choice=NAMED)
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    assert json.loads(call.function.arguments)["city"] in {"Paris", "Oslo", "Lima"}
    assert "<tool_call>" not in (choice.message.content or "")


def test_streamed_call_accumulates_to_the_non_streamed_one(sdk: openai.OpenAI) -> None:
    whole = _create(sdk, tool_choice="required").choices[0].message.tool_calls
    assert len(whole) == 1
    calls: dict[int, dict[str, str]] = {}
    content, finish, pieces = "", None, 0
    for chunk in _create(sdk, tool_choice="required", stream=True):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for fragment in delta.tool_calls or []:
            pieces += 1
            call = calls.setdefault(fragment.index, {"name": "", "arguments": ""})
            call["name"] += (fragment.function and fragment.function.name) or ""
            call["arguments"] += (fragment.function and fragment.function.arguments) or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert [(c["name"], json.loads(c["arguments"])) for c in calls.values()] == [
        (whole[0].function.name, json.loads(whole[0].function.arguments))
    ]
    assert pieces > 2 and "tool_call" not in content


def test_responses_api_function_call(sdk: openai.OpenAI) -> None:
    tools: Any = [{"type": "function", **WEATHER}, {"type": "function", **TIME}]
    kwargs: dict[str, Any] = {
        "model": "gemma-qwen-tools",
        "input": "What is the weather in Paris?",
        "tools": tools,
        "tool_choice": {"type": "function", "name": "get_weather"},
        "temperature": 0,
        "max_output_tokens": 48,
    }
    response = sdk.responses.create(**kwargs)
    calls = [item for item in response.output if item.type == "function_call"]
    assert [call.name for call in calls] == ["get_weather"]
    with sdk.responses.stream(**kwargs) as stream:
        final = stream.get_final_response()
    streamed = [item for item in final.output if item.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in streamed] == [(c.name, json.loads(c.arguments)) for c in calls]


def test_a_tool_result_renders_and_the_model_continues(sdk: openai.OpenAI) -> None:
    def turn(result: str) -> Any:
        history: list[Any] = [
            *ASK,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": result},
        ]
        return _create(sdk, messages=history, max_tokens=8)

    short, long = turn("sunny"), turn("sunny, 21 degrees, light wind from the west, no rain expected today")
    for response in (short, long):
        assert response.choices[0].finish_reason in {"stop", "length", "tool_calls"}
    assert long.usage.prompt_tokens > short.usage.prompt_tokens + 8  # the result is in the prompt


def test_a_template_without_tools_refuses_them(sdk: openai.OpenAI) -> None:
    # the first request loads the model and is refused once the load shows it; the second before the model is reached
    for _ in range(2):
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.chat.completions.create(model="gemma-no-tools", messages=ASK, tools=TOOLS, max_tokens=4)
        assert "does not render tools" in str(caught.value)
        assert caught.value.param == "tools"
    card = sdk.models.retrieve("gemma-no-tools").model_dump()
    assert not {"tools", "tool_choice"} & set(card["parameters"]), card["parameters"]
    assert "temperature" in card["parameters"]
    tooled = sdk.models.retrieve("gemma-qwen-tools").model_dump()  # a template that renders them keeps them
    assert {"tools", "tool_choice"} <= set(tooled["parameters"])
