"""What the rendezvous reads: the deployment in force.

The deployment is a source the rendezvous calls at every decision, so a policy switch
applies at once. (Its topics, co-partitioned: :mod:`modelstream.wire.copartition`.)
"""

from __future__ import annotations

from collections.abc import Callable

from modelstream.backplane.port import Backplane
from modelstream.models.deployment import Deployment
from modelstream.models.follower import RegistryFollower

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
