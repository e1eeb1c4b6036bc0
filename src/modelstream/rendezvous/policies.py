"""Rendezvous policies: how the answer is chosen among the scores in a mailbox.

A policy is a pure function of (mailbox, deployment, now); it keeps no state, so the
deployment in force can change between two calls (a policy switch while running) and
the next call simply follows it. The contract every policy keeps:

* :meth:`RendezvousPolicy.decide` returns ``None`` while waiting can still improve the
  answer, or a :class:`Decision` once the outcome is settled. With ``now`` at or past the
  mailbox's deadline the call is *final*: it returns the best acceptable answer that
  arrived, or ``None`` when there is none (the server then answers with the fallback).
* A :class:`Decision` without a model (:meth:`Decision.none`) means "settled: no
  acceptable answer can arrive any more" (every candidate errored), so the server
  answers with the fallback *now* instead of at the deadline.
* Only *choosable* live models are ever chosen: a canary or decoy (``Role.choosable`` is
  false), or a model version that is not live in the deployment, is recorded in the
  mailbox but never returned.
* :meth:`RendezvousPolicy.next_check` is the earliest time after ``now`` at which
  ``decide`` could change its mind without a new score arriving (a model's wait
  running out), or ``None``. The server also always wakes at the deadline.
* Models are told apart by *ref* (``name@version``), never by name alone: several
  versions of one name may be live at once, each answering for itself. Orders are
  tuples of refs (:meth:`Deployment.preference_order`).
* With ``Policy.split`` (A/B split), ``preference`` and ``quality`` put first, for each
  request, the model :func:`~modelstream.models.deployment.split_choice` gives its
  entity (the request id when it has none); when that model has not answered by its
  wait the rest of the order answers, as in a plain preference.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from modelstream.models.deployment import Deployment, LiveModel, PolicyKind, split_choice
from modelstream.models.refs import ModelRef
from modelstream.rendezvous.mailbox import Answer, Mailbox
from modelstream.wire.tensors import Tensor

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Decision:
    """A settled outcome: the chosen answer, or (``model is None``) none is possible."""

    outputs: tuple[Tensor, ...] | None
    model: ModelRef | None
    reason: str = ""
    error: str | None = None  # a targeted request whose model errored answers the error

    @classmethod
    def of(cls, answer: Answer, reason: str = "") -> Decision:
        score = answer.score
        return cls(score.outputs, ModelRef(score.model, score.version), reason, score.error)

    @classmethod
    def none(cls, reason: str) -> Decision:
        return cls(None, None, reason)


class RendezvousPolicy(Protocol):
    """Chooses a mailbox's answer; see the module docstring for the contract."""

    @property
    def name(self) -> str: ...

    def decide(self, mailbox: Mailbox, deployment: Deployment, now_ms: int) -> Decision | None: ...

    def next_check(self, mailbox: Mailbox, deployment: Deployment, now_ms: int) -> int | None: ...


class QualitySource(Protocol):
    """Recent measured quality per model version (higher is better), fed by the monitor."""

    def quality(self, service: str, ref: ModelRef) -> float | None:
        """The recent quality of ``ref``, or ``None`` when there is no measurement yet."""
        ...


class NoQuality:
    """The default :class:`QualitySource`: no measurements, so ``quality`` acts as preference."""

    def quality(self, service: str, ref: ModelRef) -> float | None:
        return None


def choosable(deployment: Deployment) -> list[LiveModel]:
    """The live models a policy may choose, in deployment order."""
    return [m for m in deployment.models if m.role.choosable]


def all_answered(mailbox: Mailbox, models: Sequence[LiveModel]) -> bool:
    """Whether every one of ``models`` has answered (ok or error): nothing more can come."""
    return all(mailbox.answer_for(m.ref) is not None for m in models)


def ranked_preference(
    mailbox: Mailbox, deployment: Deployment, now: int, order: tuple[str, ...]
) -> Decision | None:
    """The best-ranked ok answer, once every better-ranked model errored or ran out of wait.

    ``order`` holds refs (``name@version``); refs that are not live are skipped.
    """
    final = now >= mailbox.deadline
    candidates = live_in_order(deployment, order)
    for rank, live in enumerate(candidates):
        answer = mailbox.answer_for(live.ref)
        if answer is not None and answer.ok:
            return Decision.of(answer, f"rank {rank + 1} of {len(candidates)}")
        if answer is not None:  # errored: it cannot answer better later
            continue
        if final or now >= mailbox.wait_until(live):
            continue
        return None  # a better-ranked model may still answer in time
    if candidates and all_answered(mailbox, candidates):
        return Decision.none("every preferred model errored")
    # Models past their wait may still answer before the deadline; any answer beats none.
    return None


_last_lookup: tuple[Deployment, tuple[str, ...], tuple[LiveModel, ...]] | None = None


def live_in_order(deployment: Deployment, order: tuple[str, ...]) -> tuple[LiveModel, ...]:
    """The live models of ``order`` (refs that are not live skipped), in that order.

    Performance: every decision asks this for the same deployment object and order, so
    the last answer is kept (a deployment is immutable; a new one is a new object).
    """
    global _last_lookup  # noqa: PLW0603 - a one-entry cache, replaced atomically
    last = _last_lookup
    if last is not None and last[0] is deployment and last[1] == order:
        return last[2]
    found = tuple(live for ref in order if (live := deployment.live_ref(ref)) is not None)
    _last_lookup = (deployment, order, found)
    return found


def split_first(
    order: tuple[str, ...], deployment: Deployment, mailbox: Mailbox
) -> tuple[str, ...]:
    """``order`` with the request's A/B split choice first (unchanged without a split)."""
    if not deployment.policy.split:
        return order
    request = mailbox.request
    chosen = split_choice(deployment, request.entity or request.id)
    if chosen is None or chosen not in order:
        return order
    return (chosen, *(ref for ref in order if ref != chosen))


class PreferencePolicy:
    """``preference``: the ordered list of the deployment, each model with its own wait."""

    name = PolicyKind.PREFERENCE.value

    _last: tuple[Deployment, tuple[str, ...]] | None = None

    def order(self, deployment: Deployment) -> tuple[str, ...]:
        """Refs in preference order (before any A/B split)."""
        last = self._last  # kept per deployment object: it is immutable
        if last is not None and last[0] is deployment:
            return last[1]
        order = deployment.preference_order()
        self._last = (deployment, order)
        return order

    def request_order(self, mailbox: Mailbox, deployment: Deployment) -> tuple[str, ...]:
        """The order for this request: :meth:`order`, with its split choice first."""
        return split_first(self.order(deployment), deployment, mailbox)

    def decide(self, mailbox: Mailbox, deployment: Deployment, now_ms: int) -> Decision | None:
        return ranked_preference(
            mailbox, deployment, now_ms, self.request_order(mailbox, deployment)
        )

    def next_check(self, mailbox: Mailbox, deployment: Deployment, now_ms: int) -> int | None:
        times = [
            mailbox.wait_until(live)
            for live in live_in_order(deployment, self.request_order(mailbox, deployment))
            if mailbox.answer_for(live.ref) is None
            and now_ms < mailbox.wait_until(live) < mailbox.deadline
        ]
        return min(times, default=None)


class QualityPolicy(PreferencePolicy):
    """``quality``: preference ordered by recent measured quality, best first.

    Models without a measurement keep their preference order after the measured ones, so
    with the default :class:`NoQuality` source this is exactly ``preference``. Quality is
    measured by a monitor in the same process (``modelstream serve`` without
    ``--no-monitor``); without one (``run rendezvous``, ``serve --processes``) a warning
    is logged the first time a service asks for ``quality``.
    """

    name = PolicyKind.QUALITY.value

    def __init__(self, source: QualitySource | None = None) -> None:
        self.source: QualitySource = source or NoQuality()
        self._warned = source is not None  # only a missing source is worth a warning

    def order(self, deployment: Deployment) -> tuple[str, ...]:
        if not self._warned:
            self._warned = True
            log.warning(
                "service %s uses the quality policy, but no monitor runs in this process to "
                "measure quality, so it answers as preference; run the rendezvous with its "
                "monitor (`modelstream serve` without --no-monitor) or choose another policy",
                deployment.service,
            )
        base = deployment.preference_order()
        scored: list[tuple[float, int, str]] = []
        for rank, ref in enumerate(base):
            live = deployment.live_ref(ref)
            value = None if live is None else self.source.quality(deployment.service, live.ref)
            # Unmeasured models sort after every measured one, in preference order.
            scored.append((-value if value is not None else float("inf"), rank, ref))
        return tuple(ref for _, _, ref in sorted(scored))


class FirstPolicy:
    """``first``: the first answer that is not an error, from any choosable live model."""

    name = PolicyKind.FIRST.value

    def decide(self, mailbox: Mailbox, deployment: Deployment, now_ms: int) -> Decision | None:
        models = choosable(deployment)
        refs = {str(m.ref) for m in models}
        for answer in mailbox.answers():
            if answer.ok and answer.score.ref in refs:
                return Decision.of(answer, "first answer")
        if models and all_answered(mailbox, models):
            return Decision.none("every model errored")
        return None

    def next_check(self, mailbox: Mailbox, deployment: Deployment, now_ms: int) -> int | None:
        return None


class TargetPolicy:
    """A request with ``target``: that model version's answer alone, ok or error.

    A target without a version (``gbm``) means the version in lane ``gbm`` (the name's
    best-role live version); when the name is not live, any version's answer.
    """

    name = "target"

    def decide(self, mailbox: Mailbox, deployment: Deployment, now_ms: int) -> Decision | None:
        target = mailbox.request.target or ""
        if "@" not in target and (live := deployment.live(target)) is not None:
            target = str(live.ref)
        for answer in mailbox.answers():
            if target in (answer.score.ref, answer.score.model):
                return Decision.of(answer, "targeted request")
        return None

    def next_check(self, mailbox: Mailbox, deployment: Deployment, now_ms: int) -> int | None:
        return None


def standard_policies(quality: QualitySource | None = None) -> dict[str, RendezvousPolicy]:
    """One instance of each policy by its wire name (``quality`` reads ``quality``)."""
    from modelstream.rendezvous.consensus import ConsensusPolicy

    policies: list[RendezvousPolicy] = [
        PreferencePolicy(),
        FirstPolicy(),
        ConsensusPolicy(),
        QualityPolicy(quality),
        TargetPolicy(),
    ]
    return {policy.name: policy for policy in policies}
