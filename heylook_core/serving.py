"""Running the server: ports bound before anything says "listening", and a shutdown that drains.

Every listening socket is bound here first, so a port that is taken is one clear error naming the address, and
"listening on" is logged only once the port is really held. uvicorn then serves on those sockets (the main one and,
with ``[server] ollama_port``, Ollama's), in one process and one event loop: uvloop's where it is installed (a
dependency everywhere but Windows), as ``uvicorn.run`` would pick; it costs less per streamed chunk and per
cross-thread wake-up than the standard library's loop.

SIGTERM (or Ctrl-C) drains: new requests get 503 with ``Retry-After`` while the requests in flight finish, for at
most ``[server] shutdown_grace_s``; generations still running then end with an error event (streams) or a 503, and
the server stops, which unloads every model and reaps child processes (llama-server). A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import time
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from heylook_core.errors import ConfigError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from heylook_core.server import Server

logger = logging.getLogger("heylook_core")

RETRY_AFTER_S = 5


def bind(host: str, port: int, what: str = "heylook") -> socket.socket:
    """A listening socket on ``host:port``; a clear :class:`ConfigError` when the address is taken or invalid."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ConfigError(f"{what}: cannot listen on {host}:{port}: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        hint = "; another server is using it: stop it or choose another port" if error.errno == 98 else ""
        raise ConfigError(f"{what}: cannot listen on {host}:{port}: {error.strerror}{hint}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Drain:
    """Counts requests in flight; while the server drains, answers new ones with 503 and ``Retry-After``."""

    def __init__(self, app: ASGIApp, server: Server) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        server = self.server
        if server.draining:
            body = json.dumps(
                {
                    "error": {
                        "message": "the server is shutting down; retry shortly",
                        "type": "server_error",
                        "param": None,
                        "code": "shutting_down",
                    }
                }
            ).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(RETRY_AFTER_S).encode()),
                (b"connection", b"close"),
            ]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        server.requests_in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            server.requests_in_flight -= 1


def serve(app: Any, server: Server, sockets: Sequence[tuple[socket.socket, bool]], log_level: str | None) -> int:
    """Serve ``app`` on ``sockets`` (each with whether it runs the app's lifespan: only the first does)."""
    import uvicorn

    class _Listener(uvicorn.Server):
        # uvicorn's own handlers would stop at once on the first signal (and raise it again afterwards);
        # ours drain first
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    grace = server.settings.server.shutdown_grace_s
    servers: list[uvicorn.Server] = []
    for _, lifespan in sockets:
        config = uvicorn.Config(
            app,
            log_level=log_level,
            access_log=False,
            lifespan="on" if lifespan else "off",
            timeout_graceful_shutdown=5,
        )
        servers.append(_Listener(config))
    main = servers[0]
    state: dict[str, Any] = {"signals": 0}

    async def drain_then_stop() -> None:
        server.draining = True
        deadline = time.monotonic() + grace
        logger.info(
            "shutting down: %d request(s) in flight get up to %.0f s to finish", server.requests_in_flight, grace
        )
        while server.requests_in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if server.requests_in_flight:
            logger.warning("shutdown grace of %.0f s is over: ending %d request(s)", grace, server.requests_in_flight)
            server.stopping = True  # running generations end with an error event
            end = time.monotonic() + 2
            while server.requests_in_flight and time.monotonic() < end:
                await asyncio.sleep(0.05)
        for each in servers:
            each.should_exit = True

    def on_signal(signum: int, frame: FrameType | None) -> None:
        state["signals"] += 1
        if state["signals"] == 1:
            state["drain"] = asyncio.ensure_future(drain_then_stop())
            return
        logger.warning("second %s: stopping now", signal.Signals(signum).name)
        server.stopping = True
        for each in servers:
            each.should_exit = True
            each.force_exit = True

    async def run() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig, None)
        server.serving = True  # POST /v1/admin/restart may send SIGTERM: it drains
        tasks = [asyncio.create_task(main.serve(sockets=[sockets[0][0]]))]
        while not main.started and not tasks[0].done():
            await asyncio.sleep(0.02)
        if main.started:
            for each, (sock, _) in zip(servers[1:], sockets[1:], strict=True):
                tasks.append(asyncio.create_task(each.serve(sockets=[sock])))
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for each in servers:
            each.should_exit = True
        results = await asyncio.gather(*tasks, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        for error in failed:
            if not isinstance(error, SystemExit):
                logger.error("a listener stopped with %s: %s", type(error).__name__, error)
        return 1 if failed or not main.started else 0

    try:
        import uvloop
    except ImportError:
        return asyncio.run(run())
    return uvloop.run(run())
