"""`/metrics` in the Prometheus text format: HTTP requests and latency, plus the scheduler's counters."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from .stats import BATCH_SIZE_BUCKETS

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
COUNTERS = {
    "requests": "infer requests submitted to the scheduler",
    "failed": "infer requests answered with an error",
    "cancelled": "infer requests dropped because nobody waited for them (timeout, client gone)",
    "batches": "batches run",
    "prefix_decodes": "INR prefixes run (one per frame batch and layer decoded)",
    "prefix_cache_hits": "prefix activations (per frame and layer) taken from the prefix cache",
    "decoded_blocks": "INR decoder blocks run, per frame",
    "result_cache_hits": "task results (per frame or window) answered from the result cache",
    "result_cache_misses": "task results (per frame or window) computed",
    "backbone_loads": "task backbones built",
    "adapter_loads": "adapter sets read from files",
    "frames_decoded": "full frames decoded for the PNG endpoint",
}
GAUGES = {
    "in_flight": "HTTP requests in flight (limited ones)",
    "queued_requests": "infer requests waiting for their batch",
    "prefix_cache_bytes": "bytes of prefix activations cached",
    "result_cache_bytes": "bytes of results cached (JSON size)",
    "prefix_cache_entries": "prefix activations cached (frame x layer)",
    "result_cache_entries": "results cached",
}


class _SchedulerCollector:
    def __init__(self, snapshot: Callable[[], dict]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot()
        for name, doc in COUNTERS.items():
            yield CounterMetricFamily(f"nvcodec_{name}", doc, value=s[name])
        for name, doc in GAUGES.items():
            yield GaugeMetricFamily(f"nvcodec_{name}", doc, value=s[name])
        counts, total, buckets = s["batch_sizes"], 0, []
        for bound, n in zip(BATCH_SIZE_BUCKETS, counts):
            total += n
            buckets.append((str(bound), total))
        buckets.append(("+Inf", total + counts[-1]))
        yield HistogramMetricFamily("nvcodec_batch_requests", "requests per batch", buckets=buckets,
                                    sum_value=s["batch_size_sum"])


class Metrics:
    """A registry of its own (several apps may live in one process) with the HTTP metrics and the
    scheduler's counters read from `snapshot()` at each scrape."""

    def __init__(self, snapshot: Callable[[], dict]) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram("nvcodec_http_request_duration_seconds", "HTTP request latency",
                                 ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.requests = Counter("nvcodec_http_requests", "HTTP requests answered", ["route", "method", "status"],
                                registry=self.registry)
        self.registry.register(_SchedulerCollector(snapshot))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Record one answered request."""
        self.latency.labels(route, method, str(status)).observe(seconds)
        self.requests.labels(route, method, str(status)).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
