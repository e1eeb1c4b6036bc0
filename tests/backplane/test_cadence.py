"""CommitCadence: when a consumer loop commits (a unit test on a hand-driven clock)."""

from __future__ import annotations

from modelstream.backplane.cadence import CommitCadence


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_while_records_flow_a_commit_is_due_once_per_interval() -> None:
    clock = Clock()
    cadence = CommitCadence(100, clock)
    assert not cadence.due(idle=False)
    clock.now = 100.09
    assert not cadence.due(idle=False)
    clock.now = 100.11
    assert cadence.due(idle=False)
    cadence.committed()
    assert not cadence.due(idle=False)
    clock.now = 100.22
    assert cadence.due(idle=False)


def test_an_idle_loop_commits_at_once() -> None:
    clock = Clock()
    cadence = CommitCadence(60_000, clock)
    assert cadence.due(idle=True)
    cadence.committed()
    assert cadence.due(idle=True) and not cadence.due(idle=False)


def test_an_interval_of_zero_commits_after_every_batch() -> None:
    cadence = CommitCadence(0, Clock())
    assert cadence.due(idle=False)
    cadence.committed()
    assert cadence.due(idle=False)
