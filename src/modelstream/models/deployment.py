"""The deployment record: which versions of a service are live, in which roles, and how
the rendezvous chooses among their answers. The latest record on the compacted
``<service>.deployment`` topic (key = the service name) is the one in force; every
change (deploy, promote, rollback, rollout step, policy switch) is a new record with a
reason, so the topic is also the service's audit trail.

Roles: the ``champion`` answers by default; ``challenger`` and ``shadow`` models score
every request and may be chosen by a policy that ranks them; a ``canary`` and a ``decoy``
score every request but are never chosen.

**Several versions of one name.** A deployment may hold several live versions of one
model name (champion ``gbm@3`` and challenger ``gbm@4`` after a retrain), but each
version (``name@version``, a *ref*) at most once. Everything that chooses among models
works by ref: :meth:`Deployment.preference_order` returns refs as strings and
:attr:`Policy.order` accepts names or refs.

**Lanes.** A *lane* is the unit of scoring: one consumer group on ``<service>.requests``
scores every request with one live version (:meth:`Deployment.lanes`):

* for each model name, the live version with the best role (champion > challenger >
  shadow > canary > decoy; a tie goes to the highest version) uses lane ``name``, group
  ``<service>.scorer.<name>``. A new version of a name that takes that place is an
  in-place *swap* in the same lane: same group, same offsets, no request skipped;
* every other live version of that name uses lane ``name@version``, group
  ``<service>.scorer.<name>@<version>``. A *new* lane whose group has no committed
  offsets of its own starts at the committed offsets of lane ``name``'s group (the
  scorer pool seeds them before it starts the lane), so a version moved out of lane
  ``name`` by a promotion (the old champion, now a challenger) resumes where it was and
  skips no request. A version that moves *into* lane ``name`` is served there after the
  swap; the pool keeps its old lane scoring until then (see
  :mod:`modelstream.scoring.pool`).

**A/B split.** With :attr:`Policy.split` the preference policies first try, for each
request, one choosable model drawn by a stable hash of the request's entity, with
probability proportional to :attr:`LiveModel.weight` (a weight of 0 takes no share);
when that model has not answered by its wait, the usual preference order answers. See
:func:`split_choice`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from modelstream.errors import ConfigurationError
from modelstream.models.refs import ModelRef


class Role(StrEnum):
    CHAMPION = "champion"
    CHALLENGER = "challenger"
    SHADOW = "shadow"
    CANARY = "canary"
    DECOY = "decoy"

    @property
    def choosable(self) -> bool:
        """Whether a policy may return this role's answer to the caller."""
        return self not in (Role.CANARY, Role.DECOY)

    @property
    def rank(self) -> int:
        """0 for the champion, then challenger, shadow, canary, decoy (lower is better)."""
        return _RANK[self]


_RANK = {
    Role.CHAMPION: 0,
    Role.CHALLENGER: 1,
    Role.SHADOW: 2,
    Role.CANARY: 3,
    Role.DECOY: 4,
}


class PolicyKind(StrEnum):
    PREFERENCE = "preference"
    FIRST = "first"
    CONSENSUS = "consensus"
    QUALITY = "quality"


@dataclass(frozen=True, slots=True)
class LiveModel:
    """One live version, its role, and how long the rendezvous waits for it (ms)."""

    ref: ModelRef
    role: Role
    wait_ms: int | None = None  # None: wait until the request's deadline
    weight: float = 1.0  # share of answers in an A/B split or a canary rollout


@dataclass(frozen=True, slots=True)
class Policy:
    """How the rendezvous chooses the answer.

    ``order`` lists model names or ``name@version`` refs in preference order (default:
    champion, then challengers, then shadows); a name stands for every choosable live
    version of that name, best role first. ``min_answers`` is the k of a consensus, and
    ``combine`` is ``vote`` (classes) or ``mean`` (numbers). ``split`` turns on the A/B
    split of the preference and quality policies (see the module docstring).
    """

    kind: PolicyKind = PolicyKind.PREFERENCE
    order: tuple[str, ...] = ()
    min_answers: int = 1
    combine: str = "vote"
    split: bool = False


@dataclass(frozen=True, slots=True)
class Fallback:
    """What is answered when no acceptable answer arrived by the deadline.

    ``outputs`` of ``None`` means an explicit deadline-missed error.
    """

    outputs: tuple[Mapping[str, Any], ...] | None = None


def _lane_key(m: LiveModel) -> tuple[int, int]:
    return (m.role.rank, -m.ref.version)


def lane_name(lane: str) -> str:
    """The model name a lane id (``name`` or ``name@version``) serves."""
    return lane.partition("@")[0]


@dataclass(frozen=True, slots=True)
class Deployment:
    """The live configuration of one service (see the module docstring)."""

    service: str
    models: tuple[LiveModel, ...]
    policy: Policy = field(default_factory=Policy)
    deadline_ms: int = 100
    fallback: Fallback = field(default_factory=Fallback)
    revision: int = 1
    reason: str = ""
    created_at: int = 0
    require_signature: bool = False
    trusted_keys: Mapping[str, str] = field(default_factory=dict)  # key id -> public key
    allow_python: bool = False
    partitions: int | None = None
    # The feature set requests are featurized with before scoring (a reference; see
    # modelstream.features.spec), or None when requests carry their model inputs.
    feature_set: str | None = None

    @property
    def champion(self) -> LiveModel | None:
        return next((m for m in self.models if m.role is Role.CHAMPION), None)

    def live(self, name: str) -> LiveModel | None:
        """The live version of ``name`` with the best role (the one in lane ``name``)."""
        versions = [m for m in self.models if m.ref.name == name]
        return min(versions, key=_lane_key) if versions else None

    def live_ref(self, ref: ModelRef | str) -> LiveModel | None:
        """The live model of exactly this version (``ModelRef`` or ``name@version``)."""
        text = str(ref)
        return next((m for m in self.models if str(m.ref) == text), None)

    def resolve(self, item: str) -> LiveModel | None:
        """A name (its best-role version, as :meth:`live`) or a ``name@version`` ref."""
        return self.live_ref(item) if "@" in item else self.live(item)

    def lanes(self) -> dict[str, LiveModel]:
        """Lane id -> the live version it scores, in deployment order (see module doc)."""
        out: dict[str, LiveModel] = {}
        for m in self.models:
            out[m.ref.name if self.live(m.ref.name) is m else str(m.ref)] = m
        return out

    def lane_of(self, ref: ModelRef | str) -> str | None:
        """The lane id that scores ``ref``, or ``None`` when it is not live."""
        text = str(ref)
        return next((lane for lane, m in self.lanes().items() if str(m.ref) == text), None)

    def preference_order(self) -> tuple[str, ...]:
        """Refs (``name@version``) of choosable models, best first.

        With ``policy.order``: its entries in that order, a name expanding to every
        choosable live version of the name (best role, then highest version, first);
        choosable models it does not mention are left out. Without: by role (champion,
        challenger, shadow), then deployment order.
        """
        choosable = [m for m in self.models if m.role.choosable]
        if not self.policy.order:
            return tuple(str(m.ref) for m in sorted(choosable, key=lambda m: m.role.rank))
        out: list[str] = []
        for item in self.policy.order:
            if "@" in item:
                matches = [m for m in choosable if str(m.ref) == item]
            else:
                matches = sorted((m for m in choosable if m.ref.name == item), key=_lane_key)
            out.extend(str(m.ref) for m in matches if str(m.ref) not in out)
        return tuple(out)


def check_choice(deployment: Deployment) -> None:
    """Refuse a policy that cannot do what it says with these live models.

    ``ConfigurationError`` (saying what to change) when ``policy.order`` names a model
    or version that is not live here (a typo, or a model the deployment dropped), or
    when a consensus needs more answers (``min_answers``) than there are choosable
    models. The registry calls it before writing any deployment.
    """
    policy, live = deployment.policy, deployment.models
    names = {m.ref.name for m in live} | {str(m.ref) for m in live}
    unknown = [item for item in policy.order if item not in names]
    if unknown:
        shown = ", ".join(str(m.ref) for m in live) or "none"
        raise ConfigurationError(
            f"the policy order of {deployment.service} names {', '.join(unknown)}, not live "
            f"in its deployment (live: {shown}): remove it from the order or deploy it"
        )
    choosable = sum(1 for m in live if m.role.choosable)
    if policy.kind is PolicyKind.CONSENSUS and policy.min_answers > choosable:
        raise ConfigurationError(
            f"a consensus of {deployment.service} needs min_answers={policy.min_answers} "
            f"answers but only {choosable} live model(s) may be chosen (canaries and decoys "
            f"never are): lower min_answers to at most {choosable} or deploy more models"
        )


def split_point(service: str, entity: str) -> float:
    """A stable number in ``[0, 1)`` for ``entity`` (the same in every process and run)."""
    digest = hashlib.blake2b(f"{service}\x00{entity}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_choice(deployment: Deployment, entity: str) -> str | None:
    """The ref an A/B split gives ``entity``: by weight, over choosable models.

    Models are laid out on ``[0, 1)`` in preference order, each taking a share
    proportional to its weight; the entity's :func:`split_point` falls in one of them.
    So an entity keeps its model while the weights stay, and when one model's share
    grows at the expense of the others (a canary rollout) the entities it had stay
    with it. ``None`` when no choosable model has a positive weight.
    """
    weighted = [
        (ref, m.weight)
        for ref in deployment.preference_order()
        if (m := deployment.live_ref(ref)) is not None and m.weight > 0
    ]
    total = sum(w for _, w in weighted)
    if total <= 0:
        return None
    point = split_point(deployment.service, entity) * total
    for ref, weight in weighted:
        if point < weight:
            return ref
        point -= weight
    return weighted[-1][0]
