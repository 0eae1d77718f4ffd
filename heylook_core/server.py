"""The running server's state (:class:`Server`) and how it is built from plugins and settings (:func:`build_server`).

:mod:`heylook_core.app` wraps a built server in the FastAPI application; routes reach the server as
``request.app.state.heylook``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from heylook_core.config import Settings, load_settings
from heylook_core.errors import ConfigError
from heylook_core.metrics import Metrics
from heylook_core.plugins import PluginHost
from heylook_core.router import Router
from heylook_core.service import GenerationService

if TYPE_CHECKING:
    from heylook_core.protocols.response_store import ResponseStore


class Server:
    """Everything one running server holds; routes reach it as ``request.app.state.heylook``."""

    def __init__(self, host: PluginHost, settings: Settings, *, preload: Iterable[str] = ()) -> None:
        self.host = host
        self.settings = settings
        self.router = Router(settings)
        self.started = int(time.time())
        self.preload = list(preload)
        self.metrics = Metrics()
        self.router.observe = self.metrics.router_event
        self.config_path: str | None = None
        self.retiring: asyncio.Task[None] | None = None
        self.generation = GenerationService(self)
        self.requests_in_flight = 0
        self.draining = False  # shutting down: new requests get 503 (heylook_core.serving)
        self.stopping = False  # the shutdown grace is over: running generations end with an error
        self.restart_requested = False  # POST /v1/admin/restart: after the drain, serve_command re-executes
        self.serving = False  # under heylook_core.serving.serve, whose SIGTERM handler drains
        self.response_store: ResponseStore | None = None  # the Responses API's stored responses, made on first use


def build_server(
    config_path: str | os.PathLike[str] | None = None,
    *,
    extra_plugins: Iterable[tuple[str, object]] = (),
    entry_points: bool = True,
    preload: Iterable[str] = (),
    host: PluginHost | None = None,
) -> Server:
    """Load plugins and settings; raises ``ConfigError`` / ``PluginLoadError`` before anything serves."""
    if host is None:
        host = PluginHost(extra_plugins=extra_plugins, entry_points=entry_points).load()
    settings = load_settings(
        host.providers,
        host.offered_models,
        config_path=config_path,
        failed_plugins=[f"{r.name} ({r.error})" for r in host.failed()],
    )
    for name in preload:
        if name not in settings.model_ids() and not any(name in m.entry.aliases for m in settings.models):
            raise ConfigError(
                f"--model-id '{name}' is not a configured model; available: {', '.join(settings.model_ids())}"
            )
    server = Server(host, settings, preload=preload)
    server.config_path = str(config_path) if config_path else None
    return server
