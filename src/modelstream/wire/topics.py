"""Names of a service's topics. A service ``fraud`` owns every topic prefixed ``fraud.``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelstream.errors import ConfigurationError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it is a valid service, model or gateway name; else raise."""
    if not _NAME.match(name):
        raise ConfigurationError(
            f"{kind} name {name!r} is invalid: use 1-64 letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class ServiceTopics:
    """The topics of one service, as named in DESIGN.md."""

    service: str

    def __post_init__(self) -> None:
        check_name("service", self.service)

    def _t(self, suffix: str) -> str:
        return f"{self.service}.{suffix}"

    @property
    def requests(self) -> str:
        return self._t("requests")

    @property
    def models(self) -> str:
        return self._t("models")

    @property
    def deployment(self) -> str:
        return self._t("deployment")

    @property
    def scores(self) -> str:
        return self._t("scores")

    @property
    def results(self) -> str:
        return self._t("results")

    @property
    def labels(self) -> str:
        return self._t("labels")

    @property
    def dead_letter(self) -> str:
        return self._t("dead-letter")

    @property
    def events(self) -> str:
        return self._t("events")

    @property
    def late(self) -> str:
        return self._t("late")

    @property
    def features(self) -> str:
        """The featurizer's window results (see :mod:`modelstream.features.records`)."""
        return self._t("features")

    @property
    def features_changelog(self) -> str:
        """The featurizer's compacted state changelog (its checkpoints)."""
        return self._t("features-changelog")

    @property
    def alerts(self) -> str:
        return self._t("alerts")

    @property
    def model_events(self) -> str:
        """Scorer lifecycle events: swaps, failed loads (for the timeline and alerts)."""
        return self._t("model-events")

    def replies(self, gateway_id: str) -> str:
        return self._t(f"replies.{check_name('gateway', gateway_id)}")
