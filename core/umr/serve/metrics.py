"""Prometheus metrics of one app (its own registry, so several apps in one process never collide)."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_ROUTES = ("/health", "/metrics", "/v1/models", "/v1/embeddings", "/v1/rerank", "/rerank", "/v1/search",
           "/v1/stats", "/v1/documents", "/", "/docs", "/openapi.json")
_PREFIXES = (("/v1/jobs/", "/v1/jobs/{id}"), ("/v1/images/", "/v1/images/{path}"),
             ("/v1/documents/", "/v1/documents/{source}"), ("/static/", "/static"))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("umr_requests", "HTTP requests answered", ["route", "method", "status"], registry=r)
        self.latency = Histogram(
            "umr_request_seconds", "HTTP request latency", ["route"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.batch_items = Histogram(
            "umr_batch_items", "items carried by one pooled library call", ["model"], registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
        )
        self.batch_seconds = Histogram("umr_batch_seconds", "duration of one pooled library call", ["model"],
                                       registry=r)
        self.inputs = Counter("umr_inputs", "inputs embedded or documents scored", ["model"], registry=r)
        self.queue = Gauge("umr_queue_depth", "requests waiting for a model", ["model"], registry=r)
        self.jobs = Gauge("umr_jobs_active", "indexing jobs queued or running", registry=r)

    @staticmethod
    def route_label(path: str) -> str:
        if path in _ROUTES:
            return path
        for prefix, label in _PREFIXES:
            if path.startswith(prefix):
                return label
        return "other"

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_batch(self, model: str, items: int, seconds: float) -> None:
        self.batch_items.labels(model).observe(items)
        self.batch_seconds.labels(model).observe(seconds)

    def count_inputs(self, model: str, n: int) -> None:
        self.inputs.labels(model).inc(n)

    def bind_gauges(self, embed: Any, rerank: Any | None, jobs: Any | None) -> None:
        self.queue.labels("embed").set_function(embed.batcher.depth)
        if rerank is not None:
            self.queue.labels("rerank").set_function(rerank.batcher.depth)
        if jobs is not None:
            self.jobs.set_function(jobs.active)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
