"""Builders shared by the rendezvous tests: requests, scores, deployments, results readers."""

from __future__ import annotations

import time
from collections.abc import Sequence

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import Record
from modelstream.models.deployment import Deployment, Fallback, LiveModel, Policy, PolicyKind, Role
from modelstream.models.refs import ModelRef
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.scores import Score
from modelstream.wire.tensors import Tensor

SERVICE = "fraud"
INPUT = Tensor("x", "FP32", (1, 2), (1.0, 2.0))


def request(
    rid: str,
    now: int,
    deadline_in: int = 100,
    *,
    reply_to: str | None = None,
    target: str | None = None,
    sent_at: int | None = None,
    sent: bool = True,
    event_time: int | None = None,
) -> InferenceRequest:
    """A request arriving at ``now``; ``sent=False`` leaves ``sent_at`` unset (a request
    produced straight onto the topic by a pipeline) and ``event_time`` defaults to now."""
    return InferenceRequest(
        id=rid,
        service=SERVICE,
        event_time=now if event_time is None else event_time,
        deadline=now + deadline_in,
        inputs=(INPUT,),
        reply_to=reply_to,
        target=target,
        sent_at=None if not sent else now if sent_at is None else sent_at,
    )


def score(
    rid: str, ref: str, label: int | float | None = 1, *, error: str | None = None, at: int = 0
) -> Score:
    model = ModelRef.parse(ref)
    outputs = None
    if error is None:
        datatype = "FP64" if isinstance(label, float) else "INT64"
        outputs = (
            Tensor("label", datatype, (1,), (label,)),
            Tensor("probabilities", "FP32", (1, 2), (0.25, 0.75)),
        )
    return Score(rid, model.name, model.version, outputs, error, 0.1, at)


def deployment(
    *models: tuple[str, Role] | tuple[str, Role, int | None],
    kind: PolicyKind = PolicyKind.PREFERENCE,
    min_answers: int = 1,
    combine: str = "vote",
    fallback: Fallback | None = None,
    order: Sequence[str] = (),
) -> Deployment:
    live = tuple(
        LiveModel(ModelRef.parse(m[0]), m[1], m[2] if len(m) > 2 else None)  # type: ignore[misc]
        for m in models
    )
    return Deployment(
        service=SERVICE,
        models=live,
        policy=Policy(kind, tuple(order), min_answers, combine),
        fallback=fallback or Fallback(),
    )


def read_all(
    backplane: Backplane, topic: str, *, expect: int, timeout: float = 10.0, settle: float = 0.0
) -> list[Record]:
    """Records of ``topic`` once at least ``expect`` are there (bounded), then ``settle`` s more."""
    consumer = backplane.consumer([topic], start="earliest")
    out: list[Record] = []
    try:
        give_up = time.monotonic() + timeout
        while len(out) < expect and time.monotonic() < give_up:
            out.extend(consumer.poll(max_records=1000, timeout=0.05))
        settle_until = time.monotonic() + settle
        while time.monotonic() < settle_until:
            out.extend(consumer.poll(max_records=1000, timeout=0.05))
    finally:
        consumer.close()
    return out
