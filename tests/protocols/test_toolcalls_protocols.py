"""Calls read out of a model's text by the core (tool_parser) reach Anthropic's and Ollama's clients as their own tool
shapes: the same parser path under every adapter. The echo model with ``tool_text`` writes the user's text."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import ollama
import pytest

from heylook_core.testing import ServerProcess, serve

CONFIG = """\
default_model = "hermes"
[[models]]
id = "hermes"
provider = "echo"
tool_parser = "hermes"
[models.config]
tool_text = true
"""
TEXT = (
    'Let me look. <tool_call>{"name": "get_weather", "arguments": {"city": "Paris",}}</tool_call>'
    '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>'
)
CITY: dict[str, Any] = {"type": "object", "properties": {"city": {"type": "string"}}}
EMPTY: dict[str, Any] = {"type": "object", "properties": {}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    path = tmp_path_factory.mktemp("tool-protocols") / "models.toml"
    path.write_text(CONFIG)
    env = {"HEYLOOK_LOAD_PLUGINS": "echo", "XDG_DATA_HOME": str(path.parent)}
    with serve(path, env=env) as process:
        yield process


def test_anthropic_tool_use_blocks(server: ServerProcess) -> None:
    with anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0) as client:
        _anthropic(client)


def _anthropic(client: anthropic.Anthropic) -> None:
    tools: Any = [{"name": "get_weather", "input_schema": CITY}, {"name": "get_time", "input_schema": EMPTY}]
    message = client.messages.create(
        model="hermes", max_tokens=64, messages=[{"role": "user", "content": TEXT}], tools=tools
    )
    assert message.stop_reason == "tool_use"
    uses = [(block.name, block.input) for block in message.content if block.type == "tool_use"]
    assert uses == [("get_weather", {"city": "Paris"}), ("get_time", {})]
    texts = [block.text for block in message.content if block.type == "text"]  # (echo pads up to max_tokens)
    assert texts[0].startswith("Let me look.") and not any("tool_call" in text for text in texts)
    with client.messages.stream(
        model="hermes", max_tokens=64, messages=[{"role": "user", "content": TEXT}], tools=tools
    ) as stream:
        final = stream.get_final_message()
    assert [(block.name, block.input) for block in final.content if block.type == "tool_use"] == uses


def test_ollama_tool_calls(server: ServerProcess) -> None:
    with ollama.Client(host=server.url) as client:
        _ollama(client)


def _ollama(client: ollama.Client) -> None:
    tools: Any = [
        {"type": "function", "function": {"name": "get_weather", "parameters": CITY}},
        {"type": "function", "function": {"name": "get_time", "parameters": EMPTY}},
    ]
    response = client.chat(model="hermes", messages=[{"role": "user", "content": TEXT}], tools=tools)
    calls = [(call.function.name, dict(call.function.arguments)) for call in response.message.tool_calls or []]
    assert calls == [("get_weather", {"city": "Paris"}), ("get_time", {})]
    assert "<tool_call>" not in (response.message.content or "")
