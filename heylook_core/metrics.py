"""Prometheus metrics through ``prometheus-client``: requests by route and status, time spent, model states.

Every label value is bounded and comes from the server, never from the client: ``path`` is the template of the
route that answered (``/v1/models/{model_id:path}``), or ``unmatched`` for requests no route took (404s, requests
refused before routing); ``method`` is one of the standard methods or ``other``; ``model`` is a configured model
id. The exposition library escapes every value. Each :class:`Metrics` has its own ``CollectorRegistry``, so several
servers in one process (tests) keep separate counts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from heylook_core.router import Router

CONTENT_TYPE = CONTENT_TYPE_LATEST
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_label(scope: Scope) -> str:
    """The template of the route that handled the request (set in the scope by the router), else ``unmatched``."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED


class _ModelCollector(Collector):
    """Model gauges read from the router at scrape time (ids from the configuration only)."""

    def __init__(self) -> None:
        self.router: Router | None = None

    def collect(self) -> Iterator[Metric]:
        loaded = GaugeMetricFamily("heylook_model_loaded", "Whether a model is loaded.", labels=["model"])
        in_flight = GaugeMetricFamily(
            "heylook_model_in_flight", "Requests admitted to a model (running or waiting).", labels=["model"]
        )
        if self.router is not None:
            for slot in self.router.slots.values():
                loaded.add_metric([slot.id], int(slot.state == "loaded"))
                in_flight.add_metric([slot.id], slot.in_flight)
        yield loaded
        yield in_flight


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "heylook_requests",
            "HTTP requests by method, route and status.",
            ["method", "path", "status"],
            registry=self.registry,
        )
        self.seconds = Counter(
            "heylook_request_seconds",
            "Time spent answering requests, by method and route.",
            ["method", "path"],
            registry=self.registry,
        )
        self._models = _ModelCollector()
        self.registry.register(self._models)
        metrics = self

        class Middleware:
            """Pure ASGI: one count per request, read when the response has ended; nothing per streamed chunk."""

            def __init__(self, app: ASGIApp) -> None:
                self.app = app

            async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
                if scope["type"] != "http":
                    await self.app(scope, receive, send)
                    return
                started = time.perf_counter()
                status = [500]

                async def record(message: Message) -> None:
                    if message["type"] == "http.response.start":
                        status[0] = message["status"]
                    await send(message)

                try:
                    await self.app(scope, receive, record)
                finally:
                    method = scope.get("method", "")
                    method = method if method in _METHODS else "other"
                    path = route_label(scope)
                    metrics.requests.labels(method, path, str(status[0])).inc()
                    metrics.seconds.labels(method, path).inc(time.perf_counter() - started)

        self.middleware: Any = Middleware

    def render(self, router: Router) -> bytes:
        """The exposition text (``CONTENT_TYPE``) with the model gauges of ``router``."""
        self._models.router = router
        return generate_latest(self.registry)
