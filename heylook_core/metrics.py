"""Prometheus metrics through ``prometheus-client``: requests, tokens, latencies, queues, model loads, plugins.

Requests by method, route and status; prompt and generated tokens, time to first token, time per output token and
generation duration by model (observed by the generation service through :meth:`Metrics.generation`); requests
waiting and running by model; model loads, load time and evictions (reported by the router,
:meth:`Metrics.router_event`); plugins that failed to load.

Every label value is bounded and comes from the server, never from the client: ``path`` is the template of the
route that answered (``/v1/models/{model_id:path}``), or ``unmatched`` for requests no route took (404s, requests
refused before routing); ``method`` is one of the standard methods or ``other``; ``model`` is a configured model
id. The exposition library escapes every value. Each :class:`Metrics` has its own ``CollectorRegistry``, so several
servers in one process (tests) keep separate counts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from heylook_core import accesslog
from heylook_core.keys import observe_tokens

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from heylook_core.plugins import PluginHost
    from heylook_core.router import Router
    from heylook_core.types import Delta, Usage

CONTENT_TYPE = CONTENT_TYPE_LATEST
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# seconds: from tens of milliseconds (echo, a warm small model) to minutes (a long prompt on a CPU)
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_PER_TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
_LOAD_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def route_label(scope: Scope) -> str:
    """The template of the route that handled the request (set in the scope by the router), else ``unmatched``."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED


class _ModelCollector(Collector):
    """Model gauges read from the router at scrape time (ids from the configuration only)."""

    def __init__(self) -> None:
        self.router: Router | None = None
        self.host: PluginHost | None = None

    def collect(self) -> Iterator[Metric]:
        loaded = GaugeMetricFamily("heylook_model_loaded", "Whether a model is loaded.", labels=["model"])
        in_flight = GaugeMetricFamily(
            "heylook_model_in_flight", "Requests admitted to a model (running or waiting).", labels=["model"]
        )
        running = GaugeMetricFamily("heylook_model_running", "Requests a model is running now.", labels=["model"])
        queued = GaugeMetricFamily(
            "heylook_model_queue_depth", "Requests waiting for a model (to load, or for a turn).", labels=["model"]
        )
        if self.router is not None:
            for slot in self.router.slots.values():
                loaded.add_metric([slot.id], int(slot.state == "loaded"))
                in_flight.add_metric([slot.id], slot.in_flight)
                running.add_metric([slot.id], slot.running)
                queued.add_metric([slot.id], max(0, slot.in_flight - slot.running))
        yield loaded
        yield in_flight
        yield running
        yield queued
        failed = GaugeMetricFamily(
            "heylook_plugin_failed", "Plugins that failed to load (1), by plugin entry point.", labels=["plugin"]
        )
        if self.host is not None:
            for record in self.host.failed():
                failed.add_metric([record.name], 1)
        yield failed


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
        by_model = ["model"]
        self.prompt_tokens = Counter(
            "heylook_prompt_tokens", "Prompt tokens processed, by model.", by_model, registry=self.registry
        )
        self.generated_tokens = Counter(
            "heylook_generated_tokens", "Tokens generated, by model.", by_model, registry=self.registry
        )
        self.cached_tokens = Counter(
            "heylook_cached_prompt_tokens",
            "Prompt tokens reused from a cache, by model.",
            by_model,
            registry=self.registry,
        )
        self.generations = Counter(
            "heylook_generations",
            "Generations by model and outcome (the finish reason, error or cancelled).",
            ["model", "outcome"],
            registry=self.registry,
        )
        self.ttft = Histogram(
            "heylook_time_to_first_token_seconds",
            "From the start of a generation (queue and load included) to its first token, by model.",
            by_model,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tpot = Histogram(
            "heylook_time_per_output_token_seconds",
            "Mean time per generated token after the first, by model (one observation per generation).",
            by_model,
            buckets=_PER_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "heylook_generation_duration_seconds",
            "Duration of a generation (queue and load included), by model.",
            by_model,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.loads = Counter("heylook_model_loads", "Models loaded, by model.", by_model, registry=self.registry)
        by_key = ["key"]  # the key's configured name, never the key
        self.key_requests = Counter(
            "heylook_api_key_requests", "Requests admitted, by API key name.", by_key, registry=self.registry
        )
        self.key_limited = Counter(
            "heylook_api_key_rate_limited",
            "Requests refused with 429 (rpm or tpm), by API key name.",
            by_key,
            registry=self.registry,
        )
        self.key_tokens = Counter(
            "heylook_api_key_tokens", "Prompt and generated tokens, by API key name.", by_key, registry=self.registry
        )
        self.load_seconds = Histogram(
            "heylook_model_load_seconds",
            "Time to load a model, by model.",
            by_model,
            buckets=_LOAD_BUCKETS,
            registry=self.registry,
        )
        self.evictions = Counter(
            "heylook_model_evictions",
            "Models unloaded to make room for another (max_loaded_models), by model.",
            by_model,
            registry=self.registry,
        )
        self._models = _ModelCollector()
        self.registry.register(self._models)
        metrics = self

        class Middleware:
            """Pure ASGI: one count (and access line) per request, when the response has ended; nothing per chunk."""

            def __init__(self, app: ASGIApp, access_log: bool = False) -> None:
                self.app = app
                self.access_log = access_log  # also write the request's access line ([server] access_log)

            async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
                if scope["type"] != "http":
                    await self.app(scope, receive, send)
                    return
                started = time.perf_counter()
                status = [500]
                access = accesslog.begin() if self.access_log else None

                async def record(message: Message) -> None:
                    if message["type"] == "http.response.start":
                        status[0] = message["status"]
                    await send(message)

                try:
                    await self.app(scope, receive, record)
                finally:
                    seconds = time.perf_counter() - started
                    method = scope.get("method", "")
                    method = method if method in _METHODS else "other"
                    path = route_label(scope)
                    metrics.requests.labels(method, path, str(status[0])).inc()
                    metrics.seconds.labels(method, path).inc(seconds)
                    if access is not None:
                        accesslog.end(access[0], scope, status[0], seconds, access[1])

        self.middleware: Any = Middleware

    def render(self, router: Router, host: PluginHost | None = None) -> bytes:
        """The exposition text (``CONTENT_TYPE``) with the model gauges of ``router`` and the plugins of ``host``."""
        self._models.router = router
        self._models.host = host
        return generate_latest(self.registry)

    def router_event(self, event: str, model: str, seconds: float = 0.0) -> None:
        """Called by the router: ``load`` (with its duration) or ``evict`` (unloaded to make room)."""
        if event == "load":
            self.loads.labels(model).inc()
            self.load_seconds.labels(model).observe(seconds)
        elif event == "evict":
            self.evictions.labels(model).inc()

    def generation(self, model: str, started: float) -> GenerationMeter:
        """A meter for one generation of ``model`` (a configured id) that began at ``started`` (``perf_counter``)."""
        return GenerationMeter(self, model, started)


class GenerationMeter:
    """The metrics of one generation, fed by the generation service as its events pass (no stream layer of its own).

    :meth:`first_token` at the first event with output, :meth:`finish` at the last event, :meth:`close` once at the
    end, with the exception that ended the stream early, if one did.
    """

    __slots__ = ("finished", "first", "metrics", "model", "outcome", "started", "usage")

    def __init__(self, metrics: Metrics, model: str, started: float) -> None:
        self.metrics = metrics
        self.model = model
        self.started = started
        self.first: float | None = None
        self.finished = False
        self.outcome = "cancelled"  # a consumer that stops reading (a client gone) ends without a last event
        self.usage: Usage | None = None

    def first_token(self) -> None:
        self.first = time.perf_counter()
        self.metrics.ttft.labels(self.model).observe(self.first - self.started)

    def finish(self, delta: Delta) -> None:
        metrics, model = self.metrics, self.model
        self.finished, self.outcome = True, delta.finish_reason or "stop"
        usage = self.usage = delta.usage
        if usage is None:
            return
        metrics.prompt_tokens.labels(model).inc(usage.prompt_tokens)
        metrics.generated_tokens.labels(model).inc(usage.completion_tokens)
        if usage.cached_tokens:
            metrics.cached_tokens.labels(model).inc(usage.cached_tokens)
        spent = usage.prompt_tokens + usage.completion_tokens
        observe_tokens(spent, lambda name, count: metrics.key_tokens.labels(name).inc(count))
        if self.first is not None and usage.completion_tokens > 1:
            per_token = (time.perf_counter() - self.first) / (usage.completion_tokens - 1)
            metrics.tpot.labels(model).observe(per_token)

    def close(self, error: BaseException | None = None) -> None:
        if error is not None and not self.finished:
            self.outcome = "cancelled" if isinstance(error, (GeneratorExit, asyncio.CancelledError)) else "error"
        metrics, model = self.metrics, self.model
        accesslog.note_generation(model, self.usage, self.outcome)
        metrics.generations.labels(model, self.outcome if self.outcome in _OUTCOMES else "other").inc()
        metrics.duration.labels(model).observe(time.perf_counter() - self.started)


_OUTCOMES = frozenset({"stop", "length", "tool_calls", "content_filter", "error", "cancelled"})
