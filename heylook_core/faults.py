"""Unexpected errors: reported once, attributed, sanitised, and never allowed to break a connection.

An exception that is not a :class:`~heylook_core.errors.HeylookError` is a bug somewhere: in a provider, a plugin's
middleware, or the core. The log gets one line that names the model, its provider, the plugin and the
distribution it came from, with one traceback; the client gets a 500 whose message names the model and says the
server log has the details, never the exception's text (it may hold paths, memory addresses or data).

:class:`UnexpectedErrors` is a pure ASGI middleware that turns an exception escaping a route into that 500 without
re-raising it: Starlette's own error middleware re-raises after answering, which makes the server reset a
keep-alive connection, so the client's next request on it fails.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from heylook_core.errors import HeylookError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from heylook_core.plugins import PluginHost
    from heylook_core.router import ModelSlot

logger = logging.getLogger("heylook_core")


class InternalError(HeylookError):
    """An unexpected exception, reported to the client without its text."""

    default_code = "internal_error"


def origin_of(host: PluginHost | None, slot: ModelSlot) -> str:
    """``model 'x' (provider 'p', plugin 'n' from dist 1.0)``: who serves a model, for log lines."""
    entry = slot.model.entry
    spec = slot.model.spec
    plugin = spec.plugin if spec is not None and spec.plugin else None
    where = f"provider '{entry.provider}'"
    if plugin:
        where += f", plugin '{plugin}'"
        record = host.records.get(plugin) if host is not None else None
        if record is not None and record.distribution:
            where += f" from {record.distribution} {record.version or ''}".rstrip()
    return f"model '{slot.id}' ({where})"


def internal_error(host: PluginHost | None, slot: ModelSlot, error: BaseException, what: str = "") -> InternalError:
    """Log ``error`` once with its traceback and attribution; the sanitised error for the client."""
    logger.error(
        "%s: %s%s: %s",
        origin_of(host, slot),
        f"{what}: " if what else "",
        type(error).__name__,
        error,
        exc_info=error,
    )
    return InternalError(
        f"model '{slot.id}' failed with an internal error ({type(error).__name__}); the server log has the details"
    )


def _body(message: str) -> bytes:
    error = {"message": message, "type": "server_error", "param": None, "code": "internal_error"}
    return json.dumps({"error": error}).encode("utf-8")


class UnexpectedErrors:
    """Answer an exception that escaped the application with a 500 (once, logged) instead of re-raising it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as error:
            path = scope.get("path", "")
            logger.error(
                "unexpected error on %s %s: %s: %s",
                scope.get("method"),
                path,
                type(error).__name__,
                error,
                exc_info=error,
            )
            if started:  # the answer is under way: end it; the client sees a short body, the connection stays usable
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            body = _body(f"internal error ({type(error).__name__}) on {path}; the server log has the details")
            headers: list[tuple[bytes, bytes]] = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": 500, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
