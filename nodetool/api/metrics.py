"""Prometheus metrics: one CollectorRegistry per app, and a pure ASGI request counter.

`install_metrics(app)` (called by the app factory) creates the app's `Metrics` and adds the
middleware; route code records chat metrics through `metrics_of(app)`.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ROUTE_KEY = "nodetool.route"  # scope key: route template set by plain Starlette routes
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TTFT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """The app's collectors (names prefixed `nodetool_`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "nodetool_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.tokens = Counter(
            "nodetool_tokens",
            "Tokens by provider and direction (in = prompt, out = completion).",
            ["provider", "direction"],
            registry=r,
        )
        self.ttft = Histogram(
            "nodetool_chat_time_to_first_token_seconds",
            "Time from request to the first streamed token.",
            ["provider"],
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "nodetool_chat_latency_seconds",
            "Total chat completion latency.",
            ["provider", "stream"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inflight = Gauge(
            "nodetool_inflight_streams", "Chat completion streams in progress.", registry=r
        )
        self.upstream_errors = Counter(
            "nodetool_upstream_errors",
            "Upstream provider failures by provider and error code.",
            ["provider", "code"],
            registry=r,
        )
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request(self, route: str, method: str, status: int) -> None:
        self._child(self.requests, route, method, str(status)).inc()

    def chat_done(
        self,
        provider: str,
        stream: bool,
        started: float,
        first_token: float | None,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        """Record one finished chat completion (times from time.perf_counter())."""
        now = time.perf_counter()
        self._child(self.latency, provider, "true" if stream else "false").observe(now - started)
        if first_token is not None:
            self._child(self.ttft, provider).observe(first_token - started)
        if prompt_tokens:
            self._child(self.tokens, provider, "in").inc(prompt_tokens)
        if completion_tokens:
            self._child(self.tokens, provider, "out").inc(completion_tokens)

    def upstream_error(self, provider: str, code: str | None) -> None:
        self._child(self.upstream_errors, provider, code or "error").inc()


def metrics_of(app: Any) -> Metrics:
    """The app's Metrics (created on first use if the factory did not install them)."""
    state = app.state
    metrics = getattr(state, "metrics", None)
    if metrics is None:
        metrics = state.metrics = Metrics()
    return metrics


class MetricsMiddleware:
    """Counts every HTTP request by route template, method and final status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = getattr(scope.get("route"), "path", None) or scope.get(ROUTE_KEY, "unmatched")
            metrics_of(scope["app"]).request(path, scope["method"], status)


def install_metrics(app: Any) -> Metrics:
    """Create the app's registry and count its requests (call from the factory)."""
    metrics = metrics_of(app)
    app.add_middleware(MetricsMiddleware)
    return metrics
