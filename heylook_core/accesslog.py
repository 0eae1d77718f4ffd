"""One log line per HTTP request, written when its response has ended (``[server] access_log``).

``POST /v1/chat/completions 200 1.214s model=gemma-3-270m tokens=12+40 finish=stop key=alice client=127.0.0.1``:
the generation's fields are noted by the generation service (:func:`note_generation`) through a context variable
that the metrics middleware (:mod:`heylook_core.metrics`, which already sees every request's status and time) sets,
so a streamed response is logged once it has finished, with what it produced. Probes
(``/health``, ``/metrics``) are logged at debug level only.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from heylook_core.keys import current_key_name

if TYPE_CHECKING:
    from starlette.types import Scope

    from heylook_core.types import Usage

logger = logging.getLogger("heylook_core.access")

_QUIET_PATHS = frozenset({"/health", "/metrics", "/favicon.ico"})

# What the request being served generated; set per request by the metrics middleware, filled by note_generation.
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


def begin() -> tuple[Token[dict[str, Any] | None], dict[str, Any]]:
    """Start the record of one request (the metrics middleware calls it); give the token back to :func:`end`."""
    record: dict[str, Any] = {}
    return _CURRENT.set(record), record


def end(token: Token[dict[str, Any] | None], scope: Scope, status: int, seconds: float, record: dict[str, Any]) -> None:
    """Write the request's line, now that its response has ended."""
    _CURRENT.reset(token)
    level = logging.DEBUG if scope.get("path", "") in _QUIET_PATHS else logging.INFO
    if logger.isEnabledFor(level):
        logger.log(level, "%s", _line(scope, status, seconds, record))


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
