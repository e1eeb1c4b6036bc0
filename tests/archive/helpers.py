"""Generated traffic of one service: requests, two models' scores, results and labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord
from modelstream.wire.labels import Label
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.results import Result
from modelstream.wire.scores import Score
from modelstream.wire.tensors import Tensor

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = 86_400_000


@dataclass(frozen=True)
class Traffic:
    requests: list[InferenceRequest]
    scores: list[Score]
    results: list[Result]
    labels: list[Label]


def traffic(
    service: str,
    n: int,
    *,
    seed: int = 0,
    start: int = T0,
    step_ms: int = 60_000,
    accuracy: tuple[float, float] = (0.9, 0.6),
    models: tuple[str, str] = ("gbm", "lr"),
) -> Traffic:
    """``n`` binary-classification requests, both models' scores (each right with the given
    probability), a result per request, and a label per request by request id."""
    rng = np.random.default_rng(seed)
    requests, scores, results, labels = [], [], [], []
    for i in range(n):
        rid = f"{service}-{seed}-{i}"
        at = start + i * step_ms
        truth = int(rng.integers(0, 2))
        x = Tensor("x", "FP32", (1, 3), (float(i), float(truth), 0.5))
        requests.append(
            InferenceRequest(
                rid,
                service,
                at,
                at + 50,
                (x,),
                entity=f"e{i % 5}",
                features={"mean": float(i % 7)},
                sent_at=at,
                reply_to=f"{service}.replies.gw",
            )
        )
        for name, acc in zip(models, accuracy, strict=True):
            right = rng.random() < acc
            pred = truth if right else 1 - truth
            p1 = float(np.clip((0.8 if pred == 1 else 0.2) + rng.normal(0, 0.05), 0.01, 0.99))
            outputs = (
                Tensor("label", "INT64", (1,), (pred,)),
                Tensor("probabilities", "FP32", (1, 2), (1 - p1, p1)),
            )
            latency = float(rng.gamma(2.0, 1.0 if name == models[0] else 3.0))
            scores.append(Score(rid, name, 1, outputs, None, latency, at + 5))
        results.append(
            Result(
                rid,
                service,
                "preference",
                scores[-2].outputs,
                at + 50,
                at + 6,
                model=models[0],
                version=1,
                answers=(f"{models[0]}@1",),
            )
        )
        labels.append(Label(service, truth, at + 3_600_000, request_id=rid))
    return Traffic(requests, scores, results, labels)


def produce(backplane: Backplane, service: str, t: Traffic) -> None:
    """Put ``t`` on the service's topics, as the gateway, scorers, rendezvous would."""
    backplane.produce(
        f"{service}.requests", [OutRecord(r.encode(), r.key, (), r.event_time) for r in t.requests]
    )
    backplane.produce(
        f"{service}.scores", [OutRecord(s.encode(), s.request_id.encode()) for s in t.scores]
    )
    backplane.produce(
        f"{service}.results", [OutRecord(r.encode(), r.request_id.encode()) for r in t.results]
    )
    backplane.produce(f"{service}.labels", [OutRecord(lb.encode(), lb.key) for lb in t.labels])
