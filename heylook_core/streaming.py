"""Server-sent events in the framing OpenAI clients parse, and the JSON shapes of generation results.

Per token the hot path formats one ``data:`` line from a prebuilt prefix, the JSON-escaped text and a suffix; no
dict is built and nothing waits on a timer. A :class:`PrimedStream` lets a route wait for the first delta before it
answers, and sends ``: ping`` comments while a long prompt is processed. :class:`EventStreamResponse` writes the
events that are ready together (tokens that came faster than the client reads): one pass through the ASGI
middleware and one socket write for them all, each event still its own ``data:`` line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import types
from collections.abc import AsyncGenerator, AsyncIterator, Generator
from typing import Any, TypeVar

from starlette.responses import StreamingResponse

from heylook_core.errors import HeylookError
from heylook_core.types import ChatResult, Delta, TokenLogprob, Usage

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"
_END = object()
_PING = object()
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
T = TypeVar("T")


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + _dumps(data).encode("utf-8") + b"\n\n"


def error_event(error: HeylookError) -> bytes:
    return sse(error.to_body())


class PrimedStream:
    """A delta stream whose first item is awaited in a task of its own.

    The route waits for that first item (or its error) before the HTTP response starts, so an error before the first
    token keeps its status; while a long prompt is processed the response sends a ping every ``ping_interval``
    seconds. After the first item the stream is read directly by the response: no task, queue or timer sits on the
    per-token path.
    """

    def __init__(self, source: AsyncIterator[Any], *, ping_interval: float = 15.0) -> None:
        self.source = source
        self.ping_interval = ping_interval
        self._first: asyncio.Future[Any] = asyncio.ensure_future(self._next())

    async def _next(self) -> Any:
        try:
            return await self.source.__anext__()
        except StopAsyncIteration:
            return _END

    async def wait_first(self, timeout: float) -> bool:
        """Whether the first item came within ``timeout`` seconds; raises the source's error if it failed."""
        done, _ = await asyncio.wait({self._first}, timeout=timeout)
        if done:
            self._first.result()
        return bool(done)

    async def __aiter__(self) -> AsyncIterator[Any]:
        while not self._first.done():
            done, _ = await asyncio.wait({self._first}, timeout=self.ping_interval)
            if not done:
                yield _PING
        first = self._first.result()
        if first is _END:
            return
        yield first
        async for item in self.source:
            yield item

    async def close(self) -> None:
        if not self._first.done():
            self._first.cancel()
        with contextlib.suppress(BaseException):
            await self._first
        closer = getattr(self.source, "aclose", None)
        if closer is not None:
            with contextlib.suppress(BaseException):
                await closer()


def is_ping(item: Any) -> bool:
    return item is _PING


# -- writing what is ready at once ---------------------------------------------------------------------------------


@types.coroutine
def _finish(step: Any, pending: Any) -> Generator[Any, Any, Any]:
    """Await the rest of ``step`` (an awaitable's iterator, already run up to ``pending``, what it waits for)."""
    while True:
        try:
            value = yield pending
        except BaseException as error:  # cancelled while waiting: the step sees it where it waits
            try:
                pending = step.throw(error)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            pending = step.send(value)
        except StopIteration as stop:
            return stop.value


async def _close(step: Any) -> None:
    """Close the source through a step that waits, as ``aclose()`` would (its ``finally`` may await)."""
    try:
        pending = step.throw(GeneratorExit)
    except BaseException:  # closed (GeneratorExit, StopAsyncIteration) or failed while closing: it is done
        return
    with contextlib.suppress(BaseException):
        await _finish(step, pending)


async def ready_groups(source: AsyncIterator[T]) -> AsyncGenerator[list[T], None]:
    """The items of ``source`` in groups: each group holds the items that were there without waiting.

    The next item is asked for by running ``source.__anext__()`` one step by hand: when it completes at once the item
    joins the group; when it would wait, the group is handed on first and then the wait is awaited (cancellation
    included, as with a plain ``await``). A consumer that keeps up sees groups of one. Closing the groups while the
    source waits closes the source where it waits (``GeneratorExit`` there, its ``finally`` blocks run).
    """
    group: list[T] = []
    while True:
        step = source.__anext__().__await__()
        try:
            pending = step.send(None)
        except StopIteration as stop:  # ready
            group.append(stop.value)
            continue
        except StopAsyncIteration:
            if group:
                yield group
            return
        except BaseException:
            if group:
                yield group
            raise
        if group:
            try:
                yield group
            except BaseException:  # the consumer went away while the source waits
                await _close(step)
                raise
            group = []
        try:
            group.append(await _finish(step, pending))
        except StopAsyncIteration:
            return


class EventStreamResponse(StreamingResponse):
    """A ``StreamingResponse`` of byte chunks that sends the chunks that are ready together, in one body message."""

    async def stream_response(self, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async with contextlib.aclosing(ready_groups(aiter(self.body_iterator))) as groups:
            async for group in groups:
                chunks = [chunk.encode(self.charset) if isinstance(chunk, str) else chunk for chunk in group]
                body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


# -- chat ----------------------------------------------------------------------------------------------------------


def chat_logprobs(items: list[TokenLogprob] | None) -> dict[str, Any] | None:
    if items is None:
        return None
    return {
        "content": [
            {
                "token": item.token,
                "logprob": item.logprob,
                "bytes": item.bytes,
                "top_logprobs": [{"token": t.token, "logprob": t.logprob, "bytes": t.bytes} for t in item.top_logprobs],
            }
            for item in items
        ]
    }


class ChatChunks:
    """Formats a chat stream: role chunk, deltas, finish, optional usage chunk, ``[DONE]``."""

    def __init__(self, completion_id: str, model: str, created: int, include_usage: bool) -> None:
        usage = ',"usage":null' if include_usage else ""
        head = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        self.head = _dumps(head)[:-1]  # without the closing brace
        self.prefix = ("data: " + self.head + ',"choices":[{"index":0,"delta":').encode("utf-8")
        self.usage_field = usage
        self.include_usage = include_usage
        self.usage: Usage | None = None

    def role(self) -> bytes:
        return self.prefix + (
            '{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]' + self.usage_field + "}\n\n"
        ).encode("utf-8")

    def delta(self, delta: Delta) -> bytes:
        if delta.usage is not None:
            self.usage = delta.usage
        if delta.reasoning or delta.tool_calls or delta.logprobs is not None or delta.finish_reason:
            return self._full(delta)
        return self.prefix + (
            '{"content":' + _dumps(delta.text) + '},"logprobs":null,"finish_reason":null}]' + self.usage_field + "}\n\n"
        ).encode("utf-8")

    def _full(self, delta: Delta) -> bytes:
        body: dict[str, Any] = {}
        if delta.text:
            body["content"] = delta.text
        if delta.reasoning:
            body["reasoning_content"] = delta.reasoning
        if delta.tool_calls:
            body["tool_calls"] = delta.tool_calls
        tail = {"logprobs": chat_logprobs(delta.logprobs), "finish_reason": delta.finish_reason}
        text = _dumps(body) + "," + _dumps(tail)[1:-1] + "}]" + self.usage_field + "}\n\n"
        return self.prefix + text.encode("utf-8")

    def end(self) -> bytes:
        out = b""
        if self.include_usage:
            usage = (self.usage or Usage()).to_dict()
            out += ("data: " + self.head + ',"choices":[],"usage":' + _dumps(usage) + "}\n\n").encode("utf-8")
        return out + DONE


def chat_completion(completion_id: str, model: str, created: int, result: ChatResult) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": result.text}
    if result.tool_calls:
        message["tool_calls"] = result.tool_calls
        if not result.text:
            message["content"] = None
    if result.reasoning:
        message["reasoning_content"] = result.reasoning
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": chat_logprobs(result.logprobs),
                "finish_reason": result.finish_reason,
            }
        ],
        "usage": result.usage.to_dict(),
    }


# -- completions ---------------------------------------------------------------------------------------------------


def completion_logprobs(items: list[TokenLogprob] | None, offset: int = 0) -> dict[str, Any] | None:
    if items is None:
        return None
    offsets = []
    for item in items:
        offsets.append(offset)
        offset += len(item.token)
    return {
        "tokens": [item.token for item in items],
        "token_logprobs": [item.logprob for item in items],
        "top_logprobs": [{t.token: t.logprob for t in item.top_logprobs} for item in items],
        "text_offset": offsets,
    }


def completion_chunk(
    completion_id: str, model: str, created: int, index: int, delta: Delta, include_usage: bool
) -> bytes:
    data: dict[str, Any] = {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "text": delta.text,
                "index": index,
                "logprobs": completion_logprobs(delta.logprobs),
                "finish_reason": delta.finish_reason,
            }
        ],
    }
    if include_usage:
        data["usage"] = None
    return sse(data)
