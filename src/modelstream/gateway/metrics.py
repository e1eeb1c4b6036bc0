"""Prometheus metrics of a gateway process, every name prefixed ``modelstream_``.

Each :class:`GatewayMetrics` owns its own ``CollectorRegistry`` (never the global one),
so two apps in one test process do not collide. Scorers sharing the gateway's process
(``modelstream serve``) update the scorer metrics through the hook methods
:meth:`GatewayMetrics.scorer_batch` and :meth:`GatewayMetrics.model_swapped` (it is
their :class:`~modelstream.scoring.events.ScorerObserver`). Scorers in processes of
their own (``modelstream run scorer``, ``serve --processes``) serve no HTTP, so these
series stay empty there; their swaps are on ``<service>.model-events`` and their
figures in the scores (``modelstream models stats``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

# Serving latencies are expected in single-digit milliseconds, deadlines up to seconds.
LATENCY_BUCKETS = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
    0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class GatewayMetrics:
    """The metrics a gateway exposes on ``GET /metrics``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "modelstream_requests", "Inference requests received", ["service"], registry=r
        )
        self.answers = Counter(
            "modelstream_answers",
            "Answers returned, by the model that answered ('fallback' for the fallback)",
            ["service", "model"],
            registry=r,
        )
        self.errors = Counter(
            "modelstream_request_errors",
            "Inference requests answered with an error, by HTTP status",
            ["service", "status"],
            registry=r,
        )
        self.deadline_misses = Counter(
            "modelstream_deadline_misses",
            "Requests whose deadline passed without an acceptable answer",
            ["service"],
            registry=r,
        )
        self.latency = Histogram(
            "modelstream_request_latency_seconds",
            "Time from receiving an inference request to having its answer",
            ["service"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decision_latency = Histogram(
            "modelstream_decision_latency_seconds",
            "Time the rendezvous took to decide, as reported in the result",
            ["service"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "modelstream_scorer_batch_size",
            "Requests per scorer micro-batch",
            ["service", "model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.model_latency = Histogram(
            "modelstream_scorer_batch_latency_seconds",
            "Time a model spent scoring one micro-batch",
            ["service", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.swaps = Counter(
            "modelstream_model_swaps",
            "Model versions swapped in by scorers",
            ["service", "model"],
            registry=r,
        )

    # -- hooks for other roles in the same process ------------------------------------

    def scorer_batch(self, service: str, model: str, size: int, seconds: float) -> None:
        """A scorer of ``model`` (a name) scored a micro-batch of ``size`` in ``seconds``."""
        self.batch_size.labels(service, model).observe(size)
        self.model_latency.labels(service, model).observe(seconds)

    def model_swapped(self, service: str, model: str) -> None:
        """A scorer swapped in a new version of ``model`` (a name)."""
        self.swaps.labels(service, model).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
