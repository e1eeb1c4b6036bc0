"""Canary rollout: a new champion takes a growing share of answers, and is rolled back
automatically when its error rate or measured quality falls past a threshold.

:class:`RolloutController` drives one rollout of ``plan.ref`` in ``service`` through
deployment records only (every step, the promotion and a rollback is a record with its
reason, so ``modelstream history`` is the rollout's log):

* :meth:`RolloutController.start` reads the deployment in force (the *base*) and writes
  step 1: ``plan.ref`` live as a challenger with ``weight = share``, the champion with
  ``1 - share``, every other choosable model with weight 0, and ``Policy.split`` on (a
  ``consensus`` or ``first`` policy becomes ``preference`` for the rollout). The
  rendezvous then answers each entity with the model its stable hash draws (see
  :func:`~modelstream.models.deployment.split_choice`): an entity that got the new model
  at 5% keeps it at 25%. Every live model still scores every request.
* :meth:`RolloutController.check` (call it periodically; :meth:`run` does) first judges
  health, then advances. Health: with ``max_error_rate``, once ``plan.ref`` has at least
  ``min_scores`` scores since the start, an error rate above it rolls back; with
  ``min_quality``, a measured quality (the :class:`QualitySource`, e.g. the monitor's
  ``MonitorQuality``) below it rolls back. A step is due after ``every`` new scores of
  ``plan.ref`` or ``interval_s`` seconds. The step to a share of 1.0 is the promotion:
  ``plan.ref`` becomes champion, the old champion a challenger, and the base's weights
  and policy come back.
* A rollback writes the base's models and policy back (trust settings stay as they are).
* If anyone else writes a deployment meanwhile (its revision is not the one this
  controller wrote), the rollout is *aborted*: it writes nothing more.

The controller keeps its state in memory: a stopped ``run`` leaves the service at the
step it reached (visible in the deployment's reason); start a new rollout, promote or
roll back by hand from there.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from modelstream.clock import Clock, SystemClock
from modelstream.errors import ConfigurationError
from modelstream.models.deployment import Deployment, LiveModel, Policy, PolicyKind, Role
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.rendezvous.policies import NoQuality, QualitySource

log = logging.getLogger(__name__)

State = Literal["running", "promoted", "rolled_back", "aborted"]


class ErrorSource(Protocol):
    """Scores and error scores per model version since the source started counting."""

    def counts(self, service: str, ref: ModelRef) -> tuple[int, int]:
        """``(scored, errors)`` of ``ref``."""
        ...


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    """What to roll out and how; ``steps`` are shares of answers in ``(0, 1]``."""

    ref: ModelRef
    steps: tuple[float, ...] = (0.05, 0.25, 0.5, 1.0)
    every: int | None = None  # advance after this many new scores of ``ref``
    interval_s: float | None = None  # or after this many seconds
    max_error_rate: float | None = None
    min_quality: float | None = None
    min_scores: int = 20  # judge the error rate only on at least this many scores

    def __post_init__(self) -> None:
        steps = self.steps
        if not steps or any(not 0 < s <= 1 for s in steps) or list(steps) != sorted(set(steps)):
            raise ConfigurationError(
                "rollout steps must be increasing shares in (0, 1], e.g. --steps 5,25,50,100"
            )
        if steps[-1] != 1.0:
            object.__setattr__(self, "steps", (*steps, 1.0))  # the last step promotes
        if (self.every is None) == (self.interval_s is None):
            raise ConfigurationError("a rollout advances by --every N or --interval S: give one")
        if (self.every is not None and self.every < 1) or (
            self.interval_s is not None and self.interval_s <= 0
        ):
            raise ConfigurationError("--every must be >= 1 and --interval > 0")
        if self.max_error_rate is not None and not 0 <= self.max_error_rate < 1:
            raise ConfigurationError("--max-error-rate must be in [0, 1)")


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    """Where a rollout is: its state, step (1-based), share, and the last reason."""

    state: State
    step: int
    share: float
    reason: str
    deployment: Deployment | None = None


def _pct(share: float) -> str:
    return f"{share * 100:g}%"


class RolloutController:
    """One canary rollout of ``plan.ref`` in ``service`` (see the module docstring)."""

    def __init__(
        self,
        registry: Registry,
        service: str,
        plan: RolloutPlan,
        *,
        errors: ErrorSource,
        quality: QualitySource | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.registry = registry
        self.service = service
        self.plan = plan
        self._errors = errors
        self._quality: QualitySource = quality or NoQuality()
        self._clock: Clock = clock or SystemClock()
        self._base: Deployment | None = None
        self._written: Deployment | None = None
        self._policy = Policy()  # the policy of the running steps (split on)
        self._step = 0
        self._step_at = 0
        self._step_scored = 0
        self.status = RolloutStatus("running", 0, 0.0, "not started")

    # -- deployments --------------------------------------------------------------------

    def _split(self, base: Deployment, share: float) -> tuple[LiveModel, ...]:
        ref, champion = self.plan.ref, base.champion
        assert champion is not None
        entry = base.live_ref(ref) or base.live(ref.name)
        new = LiveModel(ref, Role.CHALLENGER, entry.wait_ms if entry else None, share)
        models = [new]
        for m in base.models:
            if m.ref == ref:
                continue
            if m is champion:
                models.insert(0, dataclasses.replace(m, weight=1.0 - share))
            elif m.role.choosable:
                models.append(dataclasses.replace(m, weight=0.0))
            else:
                models.append(m)
        return tuple(models)

    def _promoted(self, base: Deployment) -> tuple[LiveModel, ...]:
        ref, champion = self.plan.ref, base.champion
        assert champion is not None
        entry = base.live_ref(ref) or base.live(ref.name)
        new = LiveModel(ref, Role.CHAMPION, entry.wait_ms if entry else None, 1.0)
        rest = [
            dataclasses.replace(m, role=Role.CHALLENGER) if m is champion else m
            for m in base.models
            if m.ref != ref
        ]
        return (new, *rest)

    def _write(self, models: tuple[LiveModel, ...], policy: Policy, reason: str) -> Deployment:
        current = self.registry.deployment(self.service)
        written = self.registry.write_deployment(
            dataclasses.replace(current, models=models, policy=policy, reason=reason)
        )
        self._written = written
        log.info("%s: %s", self.service, reason)
        return written

    # -- the rollout --------------------------------------------------------------------

    def start(self) -> RolloutStatus:
        """Write step 1; ``ConfigurationError`` when there is nothing to roll out over."""
        base = self.registry.deployment(self.service)
        self.registry.descriptor(self.service, self.plan.ref)  # ModelNotFound early
        champion = base.champion
        if champion is None or champion.ref == self.plan.ref:
            raise ConfigurationError(
                f"{self.plan.ref} is already the champion of {self.service}: nothing to roll out"
            )
        self._base = base
        policy = base.policy
        if policy.kind not in (PolicyKind.PREFERENCE, PolicyKind.QUALITY):
            policy = dataclasses.replace(policy, kind=PolicyKind.PREFERENCE)
        self._policy = dataclasses.replace(policy, split=True)
        return self._advance(f"rollout {self.plan.ref} over {champion.ref}")

    def _advance(self, why: str) -> RolloutStatus:
        assert self._base is not None
        self._step += 1
        share = self.plan.steps[self._step - 1]
        self._step_at = self._clock.now_ms()
        self._step_scored = self._errors.counts(self.service, self.plan.ref)[0]
        total = len(self.plan.steps)
        if share >= 1.0:
            reason = f"rollout {self.plan.ref}: promoted at step {self._step}/{total} ({why})"
            d = self._write(self._promoted(self._base), self._base.policy, reason)
            self.status = RolloutStatus("promoted", self._step, 1.0, reason, d)
        else:
            reason = (
                f"rollout {self.plan.ref}: step {self._step}/{total}, {_pct(share)} of answers"
                f" ({why})"
            )
            d = self._write(self._split(self._base, share), self._policy, reason)
            self.status = RolloutStatus("running", self._step, share, reason, d)
        return self.status

    def _unhealthy(self) -> str | None:
        plan, ref = self.plan, self.plan.ref
        scored, errors = self._errors.counts(self.service, ref)
        if plan.max_error_rate is not None and scored >= plan.min_scores and scored:
            rate = errors / scored
            if rate > plan.max_error_rate:
                return f"error rate {rate:.3f} > {plan.max_error_rate:g} over {scored} scores"
        if plan.min_quality is not None:
            quality = self._quality.quality(self.service, ref)
            if quality is not None and quality < plan.min_quality:
                return f"quality {quality:.4f} < {plan.min_quality:g}"
        return None

    def check(self) -> RolloutStatus:
        """Judge health, then advance if a step is due; returns the status (see module)."""
        if self.status.state != "running" or self._base is None:
            return self.status
        current = self.registry.deployment(self.service)
        assert self._written is not None
        if current.revision != self._written.revision:
            reason = (
                f"rollout {self.plan.ref} aborted: revision {current.revision} was written "
                f"by someone else ({current.reason or 'no reason'})"
            )
            self.status = RolloutStatus("aborted", self._step, self.status.share, reason, current)
            return self.status
        problem = self._unhealthy()
        if problem is not None:
            reason = f"rollback of rollout {self.plan.ref} at {_pct(self.status.share)}: {problem}"
            base = self._base
            d = self._write(base.models, base.policy, reason)
            self.status = RolloutStatus("rolled_back", self._step, 0.0, reason, d)
            return self.status
        scored = self._errors.counts(self.service, self.plan.ref)[0]
        if self.plan.every is not None and scored - self._step_scored >= self.plan.every:
            return self._advance(f"{scored - self._step_scored} new scores, healthy")
        waited = self._clock.now_ms() - self._step_at
        if self.plan.interval_s is not None and waited >= self.plan.interval_s * 1000:
            return self._advance(f"{waited / 1000:g} s, healthy")
        return self.status

    def run(
        self,
        stop: threading.Event | None = None,
        poll_s: float = 0.5,
        on_status: Callable[[RolloutStatus], None] | None = None,
        before_check: Callable[[], object] | None = None,
    ) -> RolloutStatus:
        """Start (unless started), then check every ``poll_s`` until done or ``stop``."""
        stop = stop or threading.Event()
        if self._base is None:
            self.start()
            if on_status is not None:
                on_status(self.status)
        while self.status.state == "running" and not stop.wait(poll_s):
            if before_check is not None:
                before_check()
            previous = self.status
            status = self.check()
            if on_status is not None and status != previous:
                on_status(status)
        return self.status
