"""Prometheus text metrics: requests by route and status, request durations, model states."""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from heylook_core.router import Router


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.seconds: Counter[tuple[str, str]] = Counter()
        metrics = self

        class Middleware:
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
                    path = scope.get("path", "")
                    key = (scope.get("method", ""), path if path.startswith(("/v1/", "/health", "/-/")) else "other")
                    metrics.requests[(*key, status[0])] += 1
                    metrics.seconds[key] += time.perf_counter() - started

        self.middleware: Any = Middleware

    def render(self, router: Router) -> str:
        lines = [
            "# HELP heylook_requests_total HTTP requests by method, path and status.",
            "# TYPE heylook_requests_total counter",
        ]
        for (method, path, status), count in sorted(self.requests.items()):
            lines.append(f'heylook_requests_total{{method="{method}",path="{path}",status="{status}"}} {count}')
        lines += [
            "# HELP heylook_request_seconds_total Time spent answering requests.",
            "# TYPE heylook_request_seconds_total counter",
        ]
        for (method, path), seconds in sorted(self.seconds.items()):
            lines.append(f'heylook_request_seconds_total{{method="{method}",path="{path}"}} {seconds:.6f}')
        lines += [
            "# HELP heylook_model_loaded Whether a model is loaded.",
            "# TYPE heylook_model_loaded gauge",
        ]
        for slot in router.slots.values():
            lines.append(f'heylook_model_loaded{{model="{slot.id}"}} {int(slot.state == "loaded")}')
        lines += [
            "# HELP heylook_model_in_flight Requests admitted to a model (running or waiting).",
            "# TYPE heylook_model_in_flight gauge",
        ]
        for slot in router.slots.values():
            lines.append(f'heylook_model_in_flight{{model="{slot.id}"}} {slot.in_flight}')
        return "\n".join(lines) + "\n"
