"""The monitor's measured quality as the rendezvous's :class:`QualitySource`.

:class:`MonitorQuality` answers the ``quality`` policy from the monitors running in the
same process: the last evaluated primary metric of a model version over the current
window, oriented so that higher is better (accuracy; ``-mae`` for a regressor). A model
with fewer than ``min_labels`` labelled requests in the window has no measurement
(``None``), so the policy keeps it in preference order after the measured ones; with no
labels at all the ``quality`` policy is exactly ``preference``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from modelstream.models.refs import ModelRef


class QualityReader(Protocol):
    """What :class:`MonitorQuality` needs of a monitor (a :class:`~.monitor.Monitor`)."""

    @property
    def service(self) -> str: ...

    def quality(self, ref: ModelRef | str) -> float | None: ...


class MonitorQuality:
    """A ``QualitySource`` over the monitors of one or more services."""

    def __init__(self, monitors: Iterable[QualityReader] = ()) -> None:
        self._by_service: dict[str, QualityReader] = {}
        for monitor in monitors:
            self.add(monitor)

    def add(self, monitor: QualityReader) -> None:
        """Answer for ``monitor.service`` from ``monitor`` (replacing any earlier one)."""
        self._by_service[monitor.service] = monitor

    def quality(self, service: str, ref: ModelRef) -> float | None:
        """The recent quality of ``ref`` in ``service``, or ``None`` when not measured."""
        monitor = self._by_service.get(service)
        return None if monitor is None else monitor.quality(ref)
