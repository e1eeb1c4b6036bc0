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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from modelstream.models.deployment import Deployment, LiveModel, PolicyKind
from modelstream.models.refs import ModelRef
from modelstream.rendezvous.mailbox import Answer, Mailbox
from modelstream.wire.tensors import Tensor


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


def all_answered(mailbox: Mailbox, models: list[LiveModel]) -> bool:
    """Whether every one of ``models`` has answered (ok or error): nothing more can come."""
    return all(mailbox.answer_for(m.ref) is not None for m in models)


def ranked_preference(
    mailbox: Mailbox, deployment: Deployment, now: int, order: tuple[str, ...]
) -> Decision | None:
    """The best-ranked ok answer, once every better-ranked model errored or ran out of wait."""
    final = now >= mailbox.deadline
    candidates = [live for name in order if (live := deployment.live(name)) is not None]
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


class PreferencePolicy:
    """``preference``: the ordered list of the deployment, each model with its own wait."""

    name = PolicyKind.PREFERENCE.value

    def order(self, deployment: Deployment) -> tuple[str, ...]:
        return deployment.preference_order()

    def decide(self, mailbox: Mailbox, deployment: Deployment, now_ms: int) -> Decision | None:
        return ranked_preference(mailbox, deployment, now_ms, self.order(deployment))

    def next_check(self, mailbox: Mailbox, deployment: Deployment, now_ms: int) -> int | None:
        times = [
            mailbox.wait_until(live)
            for name in self.order(deployment)
            if (live := deployment.live(name)) is not None
            and mailbox.answer_for(live.ref) is None
            and now_ms < mailbox.wait_until(live) < mailbox.deadline
        ]
        return min(times, default=None)


class QualityPolicy(PreferencePolicy):
    """``quality``: preference ordered by recent measured quality, best first.

    Models without a measurement keep their preference order after the measured ones, so
    with the default :class:`NoQuality` source this is exactly ``preference``.
    """

    name = PolicyKind.QUALITY.value

    def __init__(self, source: QualitySource | None = None) -> None:
        self.source: QualitySource = source or NoQuality()

    def order(self, deployment: Deployment) -> tuple[str, ...]:
        base = deployment.preference_order()
        scored: list[tuple[float, int, str]] = []
        for rank, name in enumerate(base):
            live = deployment.live(name)
            value = None if live is None else self.source.quality(deployment.service, live.ref)
            # Unmeasured models sort after every measured one, in preference order.
            scored.append((-value if value is not None else float("inf"), rank, name))
        return tuple(name for _, _, name in sorted(scored))


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
    """A request with ``target``: that model version's answer alone, ok or error."""

    name = "target"

    def decide(self, mailbox: Mailbox, deployment: Deployment, now_ms: int) -> Decision | None:
        target = mailbox.request.target or ""
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
