"""A parameter the provider declares that the loaded model refuses (``Provider.refused_parameters``), as a model whose
chat template renders no tools refuses tools: once the model has loaded, its card stops offering the parameter, and a
request that sets it is a 400 naming it and giving the reason, on every protocol, from the first request on."""

from __future__ import annotations

import logging
import types
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from heylook_core import ParameterGroup, ProviderSpec, hookimpl
from heylook_echo.config import EchoConfig
from heylook_echo.provider import EchoProvider
from tests.core.conftest import user

REASON = "its chat template renders no tools"
CONFIG = f"""
[[models]]
id = "no-tools"
provider = "echo"
[models.config]
refuse = {{ tools = "{REASON}", tool_choice = "{REASON}", grammar = "never declared" }}
"""
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(CONFIG)


def card(client: TestClient, model: str = "no-tools") -> dict[str, Any]:
    response = client.get(f"/v1/models/{model}")
    assert response.status_code == 200, response.text
    return response.json()


def chat(client: TestClient, **fields: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": "no-tools", "messages": user("hi"), **fields})


def openai_error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    return response.json()["error"]


def test_the_card_offers_tools_until_the_loaded_model_refuses_them(client: TestClient) -> None:
    assert {"tools", "tool_choice"} <= set(card(client)["parameters"])  # what the provider's spec declares
    assert chat(client).status_code == 200  # loads the model
    parameters = set(card(client)["parameters"])
    assert not {"tools", "tool_choice"} & parameters
    assert {"temperature", "stop", "parallel_tool_calls"} <= parameters  # what it does not refuse stays


@pytest.mark.parametrize("stream", [False, True])
def test_tools_are_a_400_with_the_reason_from_the_first_request_on(client: TestClient, stream: bool) -> None:
    for attempt in ("first, which loads the model", "second, checked before the model is reached"):
        error = openai_error(chat(client, tools=TOOLS, stream=stream, max_tokens=4))
        assert error["type"] == "invalid_request_error", attempt
        assert error["param"] == "tools", attempt
        assert f"model 'no-tools' does not support the parameter 'tools' ({REASON})" in error["message"], attempt
    assert chat(client, max_tokens=4).json()["choices"][0]["finish_reason"] in ("stop", "length")


def test_anthropic_and_ollama_clients_see_the_refusal_in_their_shapes(client: TestClient) -> None:
    assert chat(client).status_code == 200
    anthropic = client.post(
        "/v1/messages",
        json={
            "model": "no-tools",
            "max_tokens": 4,
            "messages": user("hi"),
            "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
        },
    )
    assert anthropic.status_code == 400, anthropic.text
    body = anthropic.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert REASON in body["error"]["message"]

    ollama = client.post(
        "/api/chat", json={"model": "no-tools", "messages": user("hi"), "tools": TOOLS, "stream": False}
    )
    assert ollama.status_code == 400, ollama.text
    assert REASON in ollama.json()["error"]
    show = client.post("/api/show", json={"model": "no-tools"})
    assert "tools" not in show.json()["capabilities"]


def test_a_refused_parameter_the_spec_never_declared_is_refused_as_before(client: TestClient) -> None:
    assert chat(client).status_code == 200
    error = openai_error(chat(client, grammar="root ::= [0-9]+"))
    assert error["param"] == "grammar"
    assert "the unknown parameter 'grammar'" in error["message"]
    assert "never declared" not in error["message"]


class BrokenRefusals(EchoProvider):
    def refused_parameters(self) -> dict[str, str]:
        raise RuntimeError("boom")


def _broken_plugin() -> types.ModuleType:
    module = types.ModuleType("broken_refusals")

    @hookimpl
    def register_providers(register: Callable[[ProviderSpec[Any]], None]) -> None:
        register(
            ProviderSpec(
                name="broken_refusals",
                factory=lambda: BrokenRefusals,
                config_schema=EchoConfig,
                parameters=ParameterGroup.GENERATION,
            )
        )

    module.register_providers = register_providers  # type: ignore[attr-defined]
    return module


def test_a_provider_whose_refused_parameters_fails_still_serves_and_is_named(
    make_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(
        '[[models]]\nid = "no-tools"\nprovider = "broken_refusals"\n', plugins=[("broken_refusals", _broken_plugin())]
    )
    with caplog.at_level(logging.ERROR, logger="heylook_core"):
        assert chat(client, tools=TOOLS, max_tokens=4).status_code == 200
    assert "tools" in card(client)["parameters"]
    assert any("model 'no-tools': refused_parameters() failed" in r.getMessage() for r in caplog.records)
