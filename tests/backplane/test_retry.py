"""The backoff after a backplane failure: doubling, bounded, reset by a success."""

from __future__ import annotations

import pytest

from modelstream.backplane.retry import Backoff


def test_the_waits_double_up_to_the_bound_and_a_success_starts_them_over() -> None:
    backoff = Backoff(max_s=1.0)
    assert [backoff.failed() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.succeeded()
    assert backoff.next_s == 0.2
    assert backoff.failed() == 0.2


def test_a_bound_below_the_first_wait_bounds_the_first_wait_too() -> None:
    backoff = Backoff(max_s=0.1)
    assert [backoff.failed() for _ in range(2)] == [0.1, 0.1]


@pytest.mark.parametrize(("max_s", "first_s"), [(0.0, 0.2), (1.0, 0.0), (-1.0, 0.2)])
def test_a_wait_that_is_not_positive_is_refused(max_s: float, first_s: float) -> None:
    with pytest.raises(ValueError, match="first_s > 0 and max_s > 0"):
        Backoff(max_s=max_s, first_s=first_s)
