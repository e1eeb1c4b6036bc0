"""What a scorer is configured and named with: :class:`ScorerConfig`, its consumer group
and instance id, and the registry follower it is given (a port, so tests can drive the
scorer's registry changes by hand).

The scorer itself is :class:`modelstream.scoring.scorer.Scorer`.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from modelstream.backplane.port import Backplane, StartFrom
from modelstream.errors import ConfigurationError
from modelstream.models.deployment import Deployment
from modelstream.models.descriptor import ModelDescriptor
from modelstream.models.refs import ModelRef
from modelstream.settings import Settings
from modelstream.wire.topics import check_name

SCORER_HEADER = "x-modelstream-scorer"  # on every score: the Scorer.id that wrote it

OnChange = Callable[[Deployment | None, dict[ModelRef, ModelDescriptor]], None]


class Follower(Protocol):
    """What the scorer needs of :class:`modelstream.models.registry.RegistryFollower`."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


FollowerFactory = Callable[[Backplane, str, OnChange], Follower]


def registry_follower(backplane: Backplane, service: str, on_change: OnChange) -> Follower:
    from modelstream.models.follower import RegistryFollower

    follower: Follower = RegistryFollower(backplane, service, on_change)
    return follower


@dataclass(frozen=True, slots=True)
class ScorerConfig:
    """Tuning of a scorer; the defaults suit a latency SLA of tens of milliseconds."""

    max_batch: int = 256  # requests per batch
    max_wait_ms: float = 0.0  # how long to wait to fill a batch once a record is in hand
    timeout_ms: float = 1000.0  # per predict call; the batch gets error scores beyond it
    warm_timeout_ms: float = 30_000.0  # the warm-up of a new version
    expired: Literal["error", "score"] = "error"  # see the module docstring
    poll_timeout_s: float = 0.25  # bounds how long stop() waits for the loop
    start: StartFrom = "earliest"  # where a new group starts: every request is scored
    retry_max_s: float = 5.0  # the longest wait after a failure (Settings.retry_max_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> ScorerConfig:
        """The defaults, with what an operator sets (``Settings.batch_wait_ms``)."""
        return cls(max_wait_ms=settings.batch_wait_ms, retry_max_s=settings.retry_max_s())

    def __post_init__(self) -> None:
        if (
            self.max_batch < 1
            or self.timeout_ms <= 0
            or self.max_wait_ms < 0
            or self.retry_max_s <= 0
        ):
            raise ConfigurationError(
                "scorer config: max_batch must be >= 1, timeout_ms > 0, max_wait_ms >= 0, "
                "retry_max_s > 0"
            )


def scorer_group(service: str, lane: str) -> str:
    """The consumer group of the scorers of ``lane`` (``name`` or ``name@version``)."""
    return f"{service}.scorer.{lane}"


def check_lane(lane: str) -> str:
    """``lane`` if it is ``name`` or ``name@version``; else ``ConfigurationError``."""
    if "@" in lane:
        return str(ModelRef.parse(lane))
    return check_name("model", lane)


def scorer_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
