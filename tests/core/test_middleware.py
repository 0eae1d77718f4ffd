"""wrap_generation: rewrite, reject, short-circuit, transform streams, observe usage, fail closed."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from heylook_core import BadRequestError, Delta, GenerationContext, Usage, hookimpl
from tests.core.conftest import user
from tests.core.test_api import assert_error, sse_events

SLOW = '[[models]]\nid = "m"\nprovider = "echo"\n[models.config]\ntoken_delay_ms = 30\n'
FAST = '[[models]]\nid = "m"\nprovider = "echo"\n'


class Rewrite:
    @hookimpl
    def wrap_generation(self, request: Any, context: GenerationContext) -> Any:
        async def wrapper(request: Any, call_next: Any) -> AsyncIterator[Delta]:
            rewritten = request.model_copy(update={"messages": user("rewritten by plugin")})
            async for delta in call_next(rewritten):
                yield delta

        return wrapper


class Reject:
    @hookimpl
    def wrap_generation(self, request: Any, context: GenerationContext) -> Any:
        async def wrapper(request: Any, call_next: Any) -> AsyncIterator[Delta]:
            if "secret" in request.messages[-1].text():
                raise BadRequestError("this server does not discuss secrets", param="messages", code="policy")
            async for delta in call_next(request):
                yield delta

        return wrapper


class ShortCircuit:
    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def wrap_generation(self, request: Any, context: GenerationContext) -> Any:
        async def wrapper(request: Any, call_next: Any) -> AsyncIterator[Delta]:
            self.calls += 1
            yield Delta(text="from the cache")
            yield Delta(finish_reason="stop", usage=Usage(1, 3))

        return wrapper


class Upper:
    def __init__(self) -> None:
        self.arrivals: list[float] = []

    @hookimpl
    def wrap_generation(self, request: Any, context: GenerationContext) -> Any:
        async def wrapper(request: Any, call_next: Any) -> AsyncIterator[Delta]:
            async for delta in call_next(request):
                self.arrivals.append(time.monotonic())
                delta.text = delta.text.upper()
                yield delta

        return wrapper


class Observe:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int, str | None]] = []

    @hookimpl
    def wrap_generation(self, request: Any, context: GenerationContext) -> Any:
        async def wrapper(request: Any, call_next: Any) -> AsyncIterator[Delta]:
            async for delta in call_next(request):
                if delta.usage is not None:
                    self.seen.append(
                        (context.model_id, context.endpoint, delta.usage.completion_tokens, delta.finish_reason)
                    )
                yield delta

        return wrapper


class Tag:
    def __init__(self, label: str) -> None:
        self.label = label

    @hookimpl
    def wrap_generation(self, request: Any, context: GenerationContext) -> Any:
        async def wrapper(request: Any, call_next: Any) -> AsyncIterator[Delta]:
            yield Delta(text=f"<{self.label}>")
            async for delta in call_next(request):
                yield delta

        return wrapper


class Broken:
    @hookimpl
    def wrap_generation(self, request: Any, context: GenerationContext) -> Any:
        async def wrapper(request: Any, call_next: Any) -> AsyncIterator[Delta]:
            async for delta in call_next(request):
                yield delta
                raise KeyError("oops")

        return wrapper


def content(response: Any) -> str:
    return response.json()["choices"][0]["message"]["content"]


def test_rewrite_request(make_client: Any) -> None:
    client = make_client(FAST, plugins=[("rewrite", Rewrite())])
    assert content(client.post("/v1/chat/completions", json={"messages": user("original")})) == "rewritten by plugin"


def test_reject_with_4xx(make_client: Any) -> None:
    client = make_client(FAST, plugins=[("reject", Reject())])
    error = assert_error(client.post("/v1/chat/completions", json={"messages": user("a secret")}), 400, code="policy")
    assert "secrets" in error["message"]
    error = assert_error(
        client.post("/v1/chat/completions", json={"messages": user("a secret"), "stream": True}), 400, code="policy"
    )
    assert client.post("/v1/chat/completions", json={"messages": user("fine")}).status_code == 200


def test_short_circuit_skips_the_model(make_client: Any) -> None:
    plugin = ShortCircuit()
    client = make_client(FAST, plugins=[("cache", plugin)])
    response = client.post("/v1/chat/completions", json={"messages": user("anything")})
    assert content(response) == "from the cache"
    assert response.json()["usage"]["completion_tokens"] == 3
    assert client.get("/health").json()["loaded"] == []  # the model was never loaded
    assert plugin.calls == 1


def test_transform_stream_chunk_by_chunk(make_client: Any) -> None:
    plugin = Upper()
    client = make_client(SLOW, plugins=[("upper", plugin)])
    events = sse_events(client.post("/v1/chat/completions", json={"messages": user("a b c d e"), "stream": True}).text)
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1]) == "A B C D E"
    # each delta passed through the wrapper as it was made, 30 ms apart: nothing was buffered
    gaps = [b - a for a, b in zip(plugin.arrivals, plugin.arrivals[1:], strict=False)]
    assert len(gaps) >= 4 and min(gaps[:4]) > 0.015


def test_observe_usage_at_the_end(make_client: Any) -> None:
    plugin = Observe()
    client = make_client(FAST, plugins=[("observe", plugin)])
    client.post("/v1/chat/completions", json={"messages": user("a b"), "max_tokens": 5})
    client.post("/v1/completions", json={"prompt": "x", "max_tokens": 2, "stream": True})
    assert plugin.seen == [("m", "chat", 5, "length"), ("m", "completion", 2, "length")]


def test_first_hook_result_is_outermost(make_client: Any) -> None:
    # pluggy calls the most recently registered plugin first: its wrapper is the outermost
    client = make_client(FAST, plugins=[("inner", Tag("inner")), ("outer", Tag("outer"))])
    assert content(client.post("/v1/chat/completions", json={"messages": user("x")})) == "<outer><inner>x"


def test_raising_wrapper_fails_request_and_names_plugin(make_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(FAST, plugins=[("broken-mw", Broken())])
    with caplog.at_level(logging.ERROR):
        error = assert_error(
            client.post("/v1/chat/completions", json={"messages": user("x y")}), 500, code="plugin_error"
        )
    assert "broken-mw" in error["message"] and "KeyError" in error["message"]
    assert any("broken-mw" in record.getMessage() for record in caplog.records)
    events = sse_events(client.post("/v1/chat/completions", json={"messages": user("x y"), "stream": True}).text)
    assert "broken-mw" in events[-2]["error"]["message"] and events[-1] == "[DONE]"


def test_provider_errors_pass_through_wrappers_unblamed(make_client: Any) -> None:
    client = make_client(FAST, plugins=[("upper", Upper())])
    error = assert_error(client.post("/v1/chat/completions", json={"messages": user("!error")}), 502)
    assert "upper" not in error["message"]


class ContextOnly:
    """A wrapper hook that takes only ``context``: hook implementations may take any subset of the arguments."""

    def __init__(self) -> None:
        self.endpoints: list[str] = []

    @hookimpl
    def wrap_generation(self, context: GenerationContext) -> None:
        self.endpoints.append(context.endpoint)


def test_hook_may_take_a_subset_of_arguments(make_client: Any) -> None:
    plugin = ContextOnly()
    client = make_client(FAST, plugins=[("context-only", plugin)])
    assert content(client.post("/v1/chat/completions", json={"messages": user("x")})) == "x"
    assert plugin.endpoints == ["chat"]
