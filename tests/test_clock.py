"""The clock port: both implementations satisfy it; the manual clock is deterministic."""

from __future__ import annotations

import pytest

from modelstream.clock import Clock, ManualClock, SystemClock


@pytest.mark.parametrize("clock", [SystemClock(), ManualClock(1_000)])
def test_clocks_satisfy_the_port_and_never_go_backward(clock: Clock) -> None:
    assert isinstance(clock, Clock)
    first = clock.now_ms()
    clock.sleep(0.001)
    assert clock.now_ms() >= first


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(1_000)
    assert clock.now_ms() == 1_000
    assert clock.advance(50) == 1_050
    clock.set(900)  # setting into the past is ignored
    assert clock.now_ms() == 1_050
    with pytest.raises(ValueError, match="backward"):
        clock.advance(-1)
