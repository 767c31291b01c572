"""Prometheus metrics: one CollectorRegistry per app.

`metrics_of(app)` creates the app's `Metrics` (`nodetool.api.request_layer` counts every
request with it); route code records chat metrics through `metrics_of(app)`, the job manager
its job events through `Metrics.job_event`. Label children are looked up once per label set
and kept, so a request records its series without building labels. Every series has an
`instance` label: the process's instance id (the one the job queue knows it by). With
`--workers N` the CLI sets `PROMETHEUS_MULTIPROC_DIR` and `/metrics` aggregates every worker
process (prometheus-client's multiprocess mode). A request whose client hung up before the
response was complete is counted with status 499."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ROUTE_KEY = "nodetool.route"  # scope key: route template set by plain Starlette routes
CLIENT_CLOSED = 499  # nginx's "client closed request": the client left before the end
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
JOB_EVENTS = ("queued", "started", "retried", "completed", "failed", "cancelled")
_TTFT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """The app's collectors (names prefixed `nodetool_`)."""

    def __init__(self, instance: str | None = None) -> None:
        self.instance = instance or uuid.uuid4().hex[:12]
        self._children: dict[tuple[Any, ...], Any] = {}
        self._requests: dict[tuple[str, str, int], Any] = {}  # (route, method, status) -> child
        self._chats: dict[tuple[str, bool], tuple[Any, Any, Any, Any]] = {}
        # one process: requests are tallied in plain Python and folded into the collector
        # when /metrics is read (several processes: counted at once, the others read files)
        self._batched = not os.environ.get(MULTIPROC_ENV)
        self._request_tally: dict[tuple[str, str, int], int] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "nodetool_http_requests",
            "HTTP requests by route template, method and status.",
            ["instance", "route", "method", "status"],
            registry=r,
        )
        self.tokens = Counter(
            "nodetool_tokens",
            "Tokens by provider and direction (in = prompt, out = completion).",
            ["instance", "provider", "direction"],
            registry=r,
        )
        self.ttft = Histogram(
            "nodetool_chat_time_to_first_token_seconds",
            "Time from request to the first streamed token.",
            ["instance", "provider"],
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "nodetool_chat_latency_seconds",
            "Total chat completion latency.",
            ["instance", "provider", "stream"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._inflight = Gauge(
            "nodetool_inflight_streams",
            "Chat completion streams in progress.",
            ["instance"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.inflight = self._inflight.labels(self.instance)
        self.upstream_errors = Counter(
            "nodetool_upstream_errors",
            "Upstream provider failures by provider and error code.",
            ["instance", "provider", "code"],
            registry=r,
        )
        self.jobs = Counter(
            "nodetool_jobs",
            "Workflow job events in this process: queued (submitted here), started, retried "
            "(a later attempt started here), completed, failed, cancelled.",
            ["instance", "event"],
            registry=r,
        )
        self._jobs_running = Gauge(
            "nodetool_jobs_running",
            "Workflow jobs running in this process.",
            ["instance"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.jobs_running = self._jobs_running.labels(self.instance)
        self.job_duration = Histogram(
            "nodetool_job_duration_seconds",
            "Run time of the workflow jobs this process finished, by final status.",
            ["instance", "status"],
            buckets=_JOB_BUCKETS,
            registry=r,
        )
        for event in JOB_EVENTS:  # every series exists from the start (rates need a zero)
            self._child(self.jobs, event)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(self.instance, *labels)
        return child

    def job_event(self, event: str, duration: float | None) -> None:
        """Record a job event from the job manager (`duration`: run time of a finished job)."""
        if event in ("started", "retried"):
            self.jobs_running.inc()
        elif event == "lost":  # this process's run was superseded by another worker's
            self.jobs_running.dec()
            return
        elif duration is not None:  # a run of this process ended
            self.jobs_running.dec()
            self._child(self.job_duration, event).observe(duration)
        if event in JOB_EVENTS:
            self._child(self.jobs, event).inc()

    def exposition_registry(self) -> CollectorRegistry:
        """What `/metrics` shows: this registry, or all worker processes' in multiprocess mode."""
        if not os.environ.get(MULTIPROC_ENV):
            self.fold()
            return self.registry
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry

    def request(self, route: str, method: str, status: int) -> None:
        key = (route, method, status)
        if self._batched:
            tally = self._request_tally
            tally[key] = tally.get(key, 0) + 1
            return
        self._count_requests(key, 1)

    def _count_requests(self, key: tuple[str, str, int], count: int) -> None:
        child = self._requests.get(key)
        if child is None:
            route, method, status = key
            child = self._requests[key] = self.requests.labels(
                self.instance, route, method, str(status)
            )
        child.inc(count)

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
        children = self._chats.get((provider, stream))
        if children is None:
            children = self._chats[(provider, stream)] = (
                self._child(self.latency, provider, "true" if stream else "false"),
                self._child(self.ttft, provider),
                self._child(self.tokens, provider, "in"),
                self._child(self.tokens, provider, "out"),
            )
        latency, ttft, tokens_in, tokens_out = children
        latency.observe(now - started)
        if first_token is not None:
            ttft.observe(first_token - started)
        if prompt_tokens:
            tokens_in.inc(prompt_tokens)
        if completion_tokens:
            tokens_out.inc(completion_tokens)

    def fold(self) -> None:
        """Fold the request tally into the collector (before it is read)."""
        tally, self._request_tally = self._request_tally, {}
        for key, count in tally.items():
            self._count_requests(key, count)

    def upstream_error(self, provider: str, code: str | None) -> None:
        self._child(self.upstream_errors, provider, code or "error").inc()


def metrics_of(app: Any) -> Metrics:
    """The app's Metrics (created on first use if the factory did not install them)."""
    state = app.state
    metrics = getattr(state, "metrics", None)
    if metrics is None:
        metrics = state.metrics = Metrics()
    return metrics
