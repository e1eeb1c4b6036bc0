"""Turning a policy's decision (or the lack of one) into the :class:`Result` record.

The record is the answer *and* its audit: the chosen model version, the policy, the
answers that arrived in time (errors included), the live models that had not answered
(``missing``), and the time to decide. ``deadline_met`` is true only when a model's
answer was given by the deadline; a fallback or a miss sets it false even when it left
on time, so the gateway and the monitor count it as a miss.

When no acceptable answer exists, the service's fallback answers: ``Fallback.outputs``
as the outputs with ``fallback=True``, or, without fallback outputs, an explicit error
starting ``deadline missed:`` (the final decision at the deadline) or ``no acceptable
answer:`` (earlier, when every candidate errored and nothing better could still arrive),
followed by the errors of the models that failed, so the client sees why.

``decided_in_ms`` counts from the request's ``sent_at`` or, when it has none, from when
the request reached the rendezvous (:attr:`Mailbox.started_at`).
"""

from __future__ import annotations

import msgspec

from modelstream.errors import InvalidRequest
from modelstream.models.deployment import Deployment
from modelstream.models.refs import ModelRef
from modelstream.rendezvous.mailbox import Mailbox
from modelstream.rendezvous.policies import Decision
from modelstream.wire.results import Result
from modelstream.wire.tensors import Tensor, tensor_from_json

LATE_HEADER = "x-modelstream-late"
"""Header (value ``b"1"``) of the second, *late* record a request may get on ``results``."""
MAX_ERRORS_SHOWN = 4


def _result(
    mailbox: Mailbox,
    policy: str,
    now: int,
    deployment: Deployment | None,
    *,
    outputs: tuple[Tensor, ...] | None,
    model: ModelRef | None = None,
    error: str | None = None,
    fallback: bool = False,
) -> Result:
    """The record, built once (a frozen ``Result`` per decision, not one then a copy)."""
    request = mailbox.request
    answered = mailbox.answered_refs()
    missing: tuple[str, ...] = ()
    if deployment is not None:
        missing = tuple(r for m in deployment.models if (r := str(m.ref)) not in answered)
    return Result(
        request_id=request.id,
        service=request.service,
        policy=policy,
        outputs=outputs,
        deadline=request.deadline,
        decided_at=now,
        model=None if model is None else model.name,
        version=None if model is None else model.version,
        error=error,
        fallback=fallback,
        deadline_met=model is not None and error is None and now <= request.deadline,
        answers=answered,
        missing=missing,
        # From when the request was sent, else when it reached the rendezvous; never its
        # event_time, which a streamed request sets to when its data happened.
        decided_in_ms=float(max(0, now - mailbox.started_at)),
    )


def answer_result(
    mailbox: Mailbox, decision: Decision, policy: str, now: int, deployment: Deployment | None
) -> Result:
    """The record of a decision that chose a model's answer."""
    if decision.model is None:
        raise ValueError("answer_result needs a decision that chose a model")
    return _result(
        mailbox,
        policy,
        now,
        deployment,
        outputs=decision.outputs,
        model=decision.model,
        error=decision.error,
    )


def fallback_result(
    mailbox: Mailbox,
    policy: str,
    now: int,
    deployment: Deployment | None,
    reason: str = "",
    *,
    final: bool = True,
) -> Result:
    """The record when no acceptable answer exists: the fallback outputs, or an error."""
    outputs: tuple[Tensor, ...] | None = None
    error: str | None = None
    if deployment is None:
        error = f"deadline missed: service {mailbox.request.service!r} has no deployment"
    elif deployment.fallback.outputs is not None:
        try:
            outputs = tuple(
                tensor_from_json(t, where="fallback output") for t in deployment.fallback.outputs
            )
        except InvalidRequest as exc:
            error = f"deadline missed, and the service's fallback is invalid ({exc}); fix it"
    if outputs is None and error is None:
        waited = max(0, now - mailbox.started_at)
        live = len(deployment.models) if deployment is not None else 0
        why = reason or f"none of {live} live models answered acceptably within {waited} ms"
        # What the models that failed said: the client and the operator see why.
        failed = [f"{a.score.ref}: {a.score.error}" for a in mailbox.answers() if a.score.error]
        if failed:
            why += " (" + "; ".join(failed[:MAX_ERRORS_SHOWN]) + ")"
        prefix = "deadline missed" if final else "no acceptable answer"
        error = f"{prefix}: {why}"
    return _result(
        mailbox, policy, now, deployment, outputs=outputs, error=error, fallback=outputs is not None
    )


def too_large(result: Result, size: int, limit: int) -> Result:
    """``result`` without its outputs, its error saying they were above the backplane's
    record limit (its audit fields are kept; a client sees the error)."""
    error = (
        f"the answer of {result.ref} takes {size} bytes, above the backplane's record limit "
        f"of {limit}: send fewer rows per request, or raise MODELSTREAM_MAX_RECORD_BYTES"
    )
    return msgspec.structs.replace(result, outputs=None, error=error, deadline_met=False)
