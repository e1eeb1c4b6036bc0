"""Settings that depend on the engine: the rendezvous' answer margin."""

from __future__ import annotations

import pytest

from modelstream.settings import Settings


@pytest.mark.parametrize(
    ("backplane", "margin"),
    [("memory://", 5), ("sqlite://./x", 5), ("kafka://127.0.0.1:9092", 20)],
)
def test_the_answer_margin_leaves_the_engine_time_for_the_hop_back(
    backplane: str, margin: int
) -> None:
    assert Settings(backplane=backplane).answer_margin() == margin


def test_an_answer_margin_that_is_set_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSTREAM_ANSWER_MARGIN_MS", "35")
    assert Settings(backplane="kafka://127.0.0.1:9092").answer_margin() == 35
    assert Settings(backplane="sqlite://./x", answer_margin_ms=0).answer_margin() == 0
