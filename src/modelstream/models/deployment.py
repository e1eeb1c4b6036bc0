"""The deployment record: which versions of a service are live, in which roles, and how
the rendezvous chooses among their answers. The latest record on the compacted
``<service>.deployment`` topic (key = the service name) is the one in force; every
change (deploy, promote, rollback, policy switch) is a new record with a reason, so the
topic is also the service's audit trail.

Roles: the ``champion`` answers by default; ``challenger`` and ``shadow`` models score
every request and may be chosen by a policy that ranks them; a ``canary`` and a ``decoy``
score every request but are never chosen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

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
    weight: float = 1.0  # traffic share in an A/B split or canary rollout


@dataclass(frozen=True, slots=True)
class Policy:
    """How the rendezvous chooses the answer.

    ``order`` lists model *names* in preference order (default: champion, then
    challengers in deployment order). ``min_answers`` is the k of a consensus, and
    ``combine`` is ``vote`` (classes) or ``mean`` (numbers).
    """

    kind: PolicyKind = PolicyKind.PREFERENCE
    order: tuple[str, ...] = ()
    min_answers: int = 1
    combine: str = "vote"


@dataclass(frozen=True, slots=True)
class Fallback:
    """What is answered when no acceptable answer arrived by the deadline.

    ``outputs`` of ``None`` means an explicit deadline-missed error.
    """

    outputs: tuple[Mapping[str, Any], ...] | None = None


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

    @property
    def champion(self) -> LiveModel | None:
        return next((m for m in self.models if m.role is Role.CHAMPION), None)

    def live(self, name: str) -> LiveModel | None:
        """The live model called ``name``, if any."""
        return next((m for m in self.models if m.ref.name == name), None)

    def preference_order(self) -> tuple[str, ...]:
        """Names of choosable models, best first (the policy's order, else by role)."""
        choosable = [m.ref.name for m in self.models if m.role.choosable]
        if self.policy.order:
            return tuple(n for n in self.policy.order if n in choosable)
        rank = {Role.CHAMPION: 0, Role.CHALLENGER: 1, Role.SHADOW: 2}
        ordered = sorted(
            (m for m in self.models if m.role.choosable), key=lambda m: rank.get(m.role, 3)
        )
        return tuple(m.ref.name for m in ordered)
