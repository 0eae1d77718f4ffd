"""One log line per HTTP request, written when its response has ended (``[server] access_log``).

``POST /v1/chat/completions 200 1.214s model=gemma-3-270m tokens=12+40 finish=stop key=alice client=127.0.0.1``:
the generation's fields are noted by the generation service (:func:`note_generation`) through a context variable
the middleware sets, so a streamed response is logged once it has finished, with what it produced. Probes
(``/health``, ``/metrics``) are logged at debug level only.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from heylook_core.keys import current_key_name

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from heylook_core.types import Usage

logger = logging.getLogger("heylook_core.access")

_QUIET_PATHS = frozenset({"/health", "/metrics", "/favicon.ico"})

# What the request being served generated; set per request by AccessLog, filled by note_generation.
_CURRENT: ContextVar[dict[str, Any] | None] = ContextVar("heylook_access", default=None)


def note_generation(model: str, usage: Usage | None, finish: str) -> None:
    """Record one generation of the request being served (a completion with several prompts notes each)."""
    record = _CURRENT.get()
    if record is None:
        return
    record["model"] = model
    record["finish"] = finish
    if usage is not None:
        record["prompt_tokens"] = record.get("prompt_tokens", 0) + usage.prompt_tokens
        record["completion_tokens"] = record.get("completion_tokens", 0) + usage.completion_tokens
    record["key"] = current_key_name()


class AccessLog:
    """Pure ASGI: the status is read from the response start, the line is written after the last byte."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [0]
        record: dict[str, Any] = {}
        token = _CURRENT.set(record)

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            _CURRENT.reset(token)
            path = scope.get("path", "")
            level = logging.DEBUG if path in _QUIET_PATHS else logging.INFO
            if logger.isEnabledFor(level):
                logger.log(level, "%s", _line(scope, status[0], time.perf_counter() - started, record))


def _line(scope: Scope, status: int, seconds: float, record: dict[str, Any]) -> str:
    parts = [scope.get("method", ""), scope.get("path", ""), str(status or "-"), f"{seconds:.3f}s"]
    if "model" in record:
        parts.append(f"model={record['model']}")
        if "prompt_tokens" in record:
            parts.append(f"tokens={record['prompt_tokens']}+{record['completion_tokens']}")
        parts.append(f"finish={record['finish']}")
    if record.get("key"):
        parts.append(f"key={record['key']}")
    client = scope.get("client")
    if client:
        parts.append(f"client={client[0]}")
    return " ".join(parts)
