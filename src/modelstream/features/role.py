"""The featurizer as a role of a service: its feature set and state store, from settings.

What :class:`~modelstream.gateway.serving.Serving` starts for each service whose
deployment names a ``feature_set`` (and what ``modelstream run featurizer`` runs):

* the :class:`~modelstream.features.definitions.FeatureSet` comes from the deployment's
  reference (:func:`~modelstream.features.spec.resolve_feature_set`), read once when the
  role is built: a new feature set (a new version) takes a restart of the role;
* the state store is durable on the embedded default: ``<dir>/features/<service>.db``
  under a ``sqlite://dir`` backplane, so a restart on the same machine restores from the
  local file; on other backplanes it lives in memory and a restart rebuilds it from the
  ``<service>.features-changelog`` topic (the same values either way: see
  :mod:`modelstream.features.checkpoint`).

Invariant: :meth:`FeaturizerRole.stop` checkpoints and leaves the group before it closes
the store, so the last checkpoint is on disk when it returns.
"""

from __future__ import annotations

import logging
from pathlib import Path

from modelstream.backplane.factory import sqlite_path
from modelstream.backplane.port import Backplane
from modelstream.clock import Clock, SystemClock
from modelstream.features.featurizer import Featurizer
from modelstream.features.spec import resolve_feature_set
from modelstream.features.state import MemoryStateStore, SqliteStateStore, StateStore
from modelstream.models.deployment import Deployment
from modelstream.settings import Settings
from modelstream.wire.topics import check_name

log = logging.getLogger(__name__)


def store_path(settings: Settings, service: str) -> Path | None:
    """Where the durable state of ``service``'s featurizer lives (``None``: in memory)."""
    if not settings.backplane.startswith("sqlite://"):
        return None
    return sqlite_path(settings.backplane) / "features" / f"{check_name('service', service)}.db"


def open_store(settings: Settings, service: str) -> StateStore:
    """The state store of ``service``'s featurizer (see the module docstring)."""
    path = store_path(settings, service)
    return MemoryStateStore() if path is None else SqliteStateStore(path)


class FeaturizerRole:
    """One service's featurizer on its own thread, owning its state store."""

    def __init__(
        self,
        backplane: Backplane,
        settings: Settings,
        deployment: Deployment,
        *,
        clock: Clock | None = None,
    ) -> None:
        if deployment.feature_set is None:
            raise ValueError(f"service {deployment.service} has no feature set")
        self.service = deployment.service
        feature_set = resolve_feature_set(deployment.feature_set)
        self.store = open_store(settings, self.service)
        self.featurizer = Featurizer(
            backplane,
            settings,
            self.service,
            feature_set,
            clock=clock or SystemClock(),
            store=self.store,
        )

    def start(self) -> FeaturizerRole:
        self.featurizer.start()
        log.info("featurizer of %s: %s", self.service, self.featurizer.feature_set.ref)
        return self

    def stop(self) -> None:
        """Stop (checkpointing every owned partition), then close the store. Idempotent."""
        self.featurizer.stop()
        self.store.close()


def featurizer_roles(
    backplane: Backplane, settings: Settings, deployments: list[Deployment]
) -> list[FeaturizerRole]:
    """A (not yet started) role for each deployment that names a feature set."""
    return [FeaturizerRole(backplane, settings, d) for d in deployments if d.feature_set]
