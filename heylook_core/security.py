"""API keys (bearer, constant-time compare), Host / Origin / content-type checks and the request body limit."""

from __future__ import annotations

import hmac
import ipaddress
import time
from typing import TYPE_CHECKING

from fastapi import Request

from heylook_core.error_shapes import error_response
from heylook_core.errors import (
    AuthenticationError,
    HeylookError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    UnsupportedMediaTypeError,
)

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
    """Dependency for ``/v1/*``: with API keys configured, a matching key is required, as a bearer token or in
    ``x-api-key`` (Anthropic's clients send that header). The key's name (never the key) goes to
    ``request.state.api_key_name`` and :data:`heylook_core.keys.CURRENT_KEY`; its rpm / tpm limits give 429."""
    server = request.app.state.heylook
    if not server.settings.server.keys_required():
        return
    from heylook_core.keys import CURRENT_KEY, keyring_of

    tokens = [token for token in (_bearer(request), request.headers.get("x-api-key", "").strip()) if token]
    if not tokens:
        raise AuthenticationError(
            "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'", code="missing_api_key"
        )
    key = keyring_of(server).match(tokens)  # every token against every key, so the time says nothing
    if key is None:
        raise AuthenticationError("invalid API key")
    request.state.api_key_name = key.name
    CURRENT_KEY.set(key)
    try:
        key.admit(time.monotonic())
    except RateLimitError:
        server.metrics.key_limited.labels(key.name).inc()
        raise
    server.metrics.key_requests.labels(key.name).inc()


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
                await self._reject(scope, send)
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
                await self._reject(scope, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        error = PayloadTooLargeError(f"request body is larger than the limit of {self.limit} bytes (max_body_bytes)")
        await _reject(scope, send, error)


# -- Host, Origin and content-type checks -------------------------------------------------------------------------

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_STATE_CHANGING = frozenset({b"POST", b"PUT", b"PATCH", b"DELETE"})


def _split_host(value: str) -> str:
    """The host part of a ``Host`` header or an origin's authority, lowercased, without port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") > 1:  # a bare IPv6 address (not valid in Host, but do not misread it)
        return value
    return value.rpartition(":")[0] if ":" in value else value


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (no port) names this machine's loopback: ``localhost``, 127.0.0.0/8 or ``::1``."""
    host = host.rstrip(".")
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    address = _ip(host)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class HostPolicy:
    """Which ``Host`` headers a server answers: loopback, ``allowed_hosts``, and the address it is bound to.

    Entries of ``allowed_hosts`` are host names or addresses without port; one starting with a dot (``.lan``)
    matches that domain's subdomains, and ``"*"`` accepts any host. Bound to a wildcard address (``0.0.0.0`` or
    ``::``), any IP address literal is accepted: DNS rebinding needs a name, and a client that sends an address
    reached the server through it.
    """

    def __init__(self, allowed_hosts: list[str], bind_host: str) -> None:
        self.any = "*" in allowed_hosts
        names = [entry.strip().lower().rstrip(".") for entry in allowed_hosts if entry.strip() and entry != "*"]
        self.exact = {_split_host(name) if name.startswith("[") else name for name in names if name[:1] != "."}
        self.suffixes = tuple(name for name in names if name[:1] == ".")
        bind = bind_host.strip().lower().strip("[]")
        self.any_ip = bind in ("0.0.0.0", "::", "")
        if bind and not self.any_ip:
            self.exact.add(bind)

    def allows(self, header: str) -> bool:
        if self.any:
            return True
        host = _split_host(header).rstrip(".")
        if not host:
            return False
        if is_loopback_host(host) or host in self.exact or host.endswith(self.suffixes):
            return True
        if self.any_ip and _ip(host) is not None:
            return True
        address = _ip(host)
        return address is not None and str(address) in self.exact


def _is_json(content_type: bytes) -> bool:
    kind = content_type.split(b";", 1)[0].strip().lower()
    return kind == b"application/json" or (kind.startswith(b"application/") and kind.endswith(b"+json"))


class RequestGuard:
    """ASGI middleware against cross-site requests and DNS rebinding.

    * A request whose ``Host`` the :class:`HostPolicy` does not allow gets 403 (a page on a rebinding name that
      resolves to 127.0.0.1 sends its own name as ``Host``).
    * A state-changing request (POST, PUT, PATCH, DELETE) with an ``Origin`` that is neither in ``cors_origins`` nor
      the server's own origin gets 403 (a page on another site can send "simple" requests without a preflight).
    * A ``/v1`` POST without an ``Origin`` (``curl -d``, SDKs) is read as JSON whatever its content type, multipart
      uploads excepted. With an ``Origin`` its body must have a JSON (or multipart) content type, else 415.

    Pure ASGI: it looks at the request head once and then gets out of the way, so it costs nothing per streamed
    chunk.
    """

    def __init__(self, app: ASGIApp, *, allowed_hosts: list[str], cors_origins: list[str], bind_host: str) -> None:
        self.app = app
        self.hosts = HostPolicy(allowed_hosts, bind_host)
        self.any_origin = "*" in cors_origins
        self.origins = {origin.strip().lower().rstrip("/") for origin in cors_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = origin = content_type = None
        for key, value in scope["headers"]:
            if key == b"host":
                host = value
            elif key == b"origin":
                origin = value
            elif key == b"content-type":
                content_type = value
        if host is None or not self.hosts.allows(host.decode("latin-1")):
            shown = (host or b"").decode("latin-1")[:100]
            await _reject(
                scope,
                send,
                PermissionDeniedError(
                    f"host '{shown}' is not allowed; add it to [server] allowed_hosts to serve it",
                    code="host_not_allowed",
                ),
            )
            return
        method = scope.get("method", "GET").encode("latin-1")
        if origin is not None and method in _STATE_CHANGING and not self._origin_allowed(origin, host):
            await _reject(
                scope,
                send,
                PermissionDeniedError(
                    f"origin '{origin.decode('latin-1')[:100]}' is not allowed; list it in [server] cors_origins",
                    code="origin_not_allowed",
                ),
            )
            return
        if method == b"POST" and scope["path"].startswith("/v1/"):
            kind = content_type or b""
            if kind.lower().startswith(b"multipart/") or _is_json(kind):
                pass
            elif origin is None:
                headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
                scope["headers"] = [*headers, (b"content-type", b"application/json")]  # in place: see metrics
            else:
                await _reject(
                    scope,
                    send,
                    UnsupportedMediaTypeError(
                        f"content type '{kind.decode('latin-1')[:100]}' is not accepted from a web page; "
                        "send 'Content-Type: application/json'",
                    ),
                )
                return
        await self.app(scope, receive, send)

    def _origin_allowed(self, origin: bytes, host: bytes) -> bool:
        value = origin.decode("latin-1").strip().lower().rstrip("/")
        if self.any_origin or value in self.origins:
            return True
        scheme, sep, authority = value.partition("://")
        if not sep or scheme not in ("http", "https"):
            return False  # "null" (sandboxed frames, file: pages) and anything else
        own = host.decode("latin-1").strip().lower()
        default = ":443" if scheme == "https" else ":80"
        return authority == own or authority.removesuffix(default) == own.removesuffix(default)


async def _reject(scope: Scope, send: Send, error: HeylookError) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    response = error_response(error, scope.get("path", ""))
    await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})
