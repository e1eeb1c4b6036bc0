"""What the gateway needs from the model registry, as a structural type.

The gateway is coded against this protocol rather than the concrete
:class:`modelstream.models.registry.Registry` so it can be tested with a stand-in and so
the one place that builds it (``gateway.server``) decides which registry is used. The
method names and signatures are the registry's own; every call may block on the
backplane, so the gateway only calls them from a worker thread, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from modelstream.models.deployment import Deployment, Policy
from modelstream.models.descriptor import ModelDescriptor
from modelstream.models.refs import ModelRef


class RegistryPort(Protocol):
    """The subset of the model registry used by the gateway (data plane and management)."""

    def services(self) -> list[str]:
        """Names of every service with a deployment."""
        ...

    def descriptors(self, service: str) -> list[ModelDescriptor]:
        """Every published version of every model of ``service``."""
        ...

    def descriptor(self, service: str, ref: ModelRef) -> ModelDescriptor:
        """One version; raises ``ModelNotFound``."""
        ...

    def deployment(self, service: str) -> Deployment:
        """The deployment in force; raises ``ServiceNotFound``."""
        ...

    def history(self, service: str) -> list[Deployment]:
        """Every deployment record of ``service``, oldest first."""
        ...

    def publish(
        self,
        service: str,
        name: str,
        data: bytes,
        *,
        format: str,
        version: int | None = None,
        entrypoint: str | None = None,
        sign_key: Any = None,
        lineage: Any = None,
    ) -> ModelDescriptor:
        """Validate, digest and publish a new version."""
        ...

    def deploy(  # noqa: PLR0917 - the registry's own signature
        self,
        service: str,
        champion: ModelRef,
        challengers: Sequence[ModelRef] = (),
        canary: ModelRef | None = None,
        decoys: Sequence[ModelRef] = (),
        shadows: Sequence[ModelRef] = (),
        policy: Policy | None = None,
        deadline_ms: int | None = None,
        reason: str = "",
    ) -> Deployment:
        """Write a new deployment record."""
        ...

    def promote(self, service: str, ref: ModelRef, reason: str) -> Deployment:
        """Make ``ref`` the champion."""
        ...

    def rollback(self, service: str, reason: str) -> Deployment:
        """Return to the previous deployment."""
        ...

    def set_policy(self, service: str, policy: Policy, reason: str) -> Any:
        """Switch the rendezvous policy of ``service``."""
        ...
