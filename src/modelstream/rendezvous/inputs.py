"""What the rendezvous reads: the deployment in force, and its co-partitioned topics.

The deployment is a source the rendezvous calls at every decision, so a policy switch
applies at once. Requests, scores and results must have one partition count: partition
``p`` of each holds the same requests, and goes to the same member.
"""

from __future__ import annotations

from collections.abc import Callable

from modelstream.backplane.port import Backplane
from modelstream.errors import ConfigurationError
from modelstream.models.deployment import Deployment
from modelstream.models.follower import RegistryFollower
from modelstream.wire.topics import ServiceTopics

DeploymentSource = Callable[[], Deployment | None]


class FollowedDeployment:
    """A :data:`DeploymentSource` kept current by the registry's ``RegistryFollower``."""

    def __init__(self, backplane: Backplane, service: str, catch_up_s: float = 10.0) -> None:
        # The deployment alone: the rendezvous never loads a model, so it reads no bytes.
        self._follower = RegistryFollower(backplane, service, lambda _d, _m: None, models=False)
        self._catch_up_s = catch_up_s

    def __call__(self) -> Deployment | None:
        return self._follower.deployment

    def start(self) -> None:
        """Start following, and wait (bounded) until the deployment in force is known."""
        self._follower.start()
        self._follower.wait_caught_up(self._catch_up_s)

    def stop(self) -> None:
        self._follower.stop()


def ensure_topics(
    backplane: Backplane,
    topics: ServiceTopics,
    deployment: Deployment | None,
    default_partitions: int,
) -> int:
    """Create requests, scores and results with one partition count; return it.

    The count is that of an existing ``requests``, else the deployment's, else
    ``default_partitions``. Raises ``ConfigurationError`` when they exist with different
    counts (co-partitioning would be broken, so scores would not meet their requests).
    """
    existing = {spec.name: spec.partitions for spec in backplane.list_topics()}
    count = existing.get(topics.requests) or (
        (deployment.partitions if deployment else None) or default_partitions
    )
    for name in (topics.requests, topics.scores, topics.results):
        spec = backplane.create_topic(name, count)
        if spec.partitions != count:
            raise ConfigurationError(
                f"topic {name!r} has {spec.partitions} partitions but "
                f"{topics.requests!r} has {count}: the rendezvous needs the same count "
                "on requests, scores and results; recreate them with one count"
            )
    return count
