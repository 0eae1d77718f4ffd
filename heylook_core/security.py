"""API keys (bearer, constant-time compare) and the request body limit."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from fastapi import Request

from heylook_core.errors import AuthenticationError, NotFoundError, PayloadTooLargeError, PermissionDeniedError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _matches(token: str, keys: list[str]) -> bool:
    found = False
    for key in keys:  # compare against every key so the time does not say which one matched
        found |= hmac.compare_digest(token.encode("utf-8"), key.encode("utf-8"))
    return found


async def require_api_key(request: Request) -> None:
    """Dependency for ``/v1/*``: with API keys configured, a matching bearer token is required."""
    keys = request.app.state.heylook.settings.server.api_keys
    if not keys:
        return
    token = _bearer(request)
    if token is None:
        raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
    if not _matches(token, keys):
        raise AuthenticationError("invalid API key")


async def require_admin_key(request: Request) -> None:
    """Dependency for admin routes: off (404) without an admin key, 401/403 without the right one."""
    admin = request.app.state.heylook.settings.server.admin_key
    if not admin:
        raise NotFoundError("admin routes are off: set [server] admin_key or HEYLOOK_ADMIN_KEY to use them")
    token = _bearer(request)
    if token is None:
        raise AuthenticationError("missing admin key: send 'Authorization: Bearer <admin key>'", code="missing_api_key")
    if not _matches(token, [admin]):
        raise PermissionDeniedError("this route needs the admin key")


class AssumeJSON:
    """ASGI middleware: read a ``/v1`` POST body as JSON whatever its content type (``curl -d`` sends a form type),
    except multipart uploads."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith("/v1/"):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            original = dict(scope["headers"]).get(b"content-type", b"")
            if not original.startswith(b"multipart/"):
                scope = dict(scope, headers=[*headers, (b"content-type", b"application/json")])
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: answer 413 when a request body is larger than ``limit`` bytes."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                too_large = int(length) > self.limit
            except ValueError:
                too_large = False
            if too_large:
                await self._reject(send)
                return
            await self.app(scope, receive, send)
            return
        # No length given (chunked): read the body here, up to the limit, then replay it.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._reject(send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send: Send) -> None:
        from heylook_core.streaming import _dumps

        error = PayloadTooLargeError(f"request body is larger than the limit of {self.limit} bytes (max_body_bytes)")
        body = _dumps(error.to_body()).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
