"""How ``Serving`` starts its roles: the rendezvous of several services side by side."""

from __future__ import annotations

import threading

import pytest

from modelstream.backplane.memory import MemoryBackplane
from modelstream.errors import ConfigurationError
from modelstream.gateway.serving import Serving
from modelstream.rendezvous.server import Rendezvous
from modelstream.settings import Settings


def serving(services: list[str]) -> Serving:
    settings = Settings(backplane="memory://")
    return Serving(
        MemoryBackplane(settings),
        settings,
        services,
        gateway=False,
        scorers=False,
        monitor=False,
        featurizers=False,
        archiver=False,
        trainer=False,
    )


def test_the_rendezvous_of_several_services_start_side_by_side(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each start waits for the other: one after the other, the first would time out."""
    both = threading.Barrier(2, timeout=10)
    monkeypatch.setattr(Rendezvous, "start", lambda self: both.wait())
    monkeypatch.setattr(Rendezvous, "wait_until_assigned", lambda self, timeout=0.0: True)
    roles = serving(["a", "b"])
    try:
        roles.start()
    finally:
        roles.stop()
    assert not both.broken


def test_a_rendezvous_that_fails_to_start_fails_the_start_after_the_others_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[str] = []

    def start(self: Rendezvous) -> None:
        if self.topics.service == "a":
            raise ConfigurationError("the topics of a have different partition counts")
        started.append(self.topics.service)

    monkeypatch.setattr(Rendezvous, "start", start)
    roles = serving(["a", "b"])
    try:
        with pytest.raises(ConfigurationError, match="different partition counts"):
            roles.start()
    finally:
        roles.stop()
    assert started == ["b"]
