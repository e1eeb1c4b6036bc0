"""Settings that derive a value: the rendezvous' answer margin, a group member's longest backoff."""

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


@pytest.mark.parametrize(("session_ms", "most_s"), [(3000, 1.0), (6000, 2.0), (60_000, 5.0)])
def test_a_group_member_never_backs_off_past_its_session(session_ms: int, most_s: float) -> None:
    """Backing off for a session timeout or more gets a member dropped from its group."""
    settings = Settings(session_timeout_ms=session_ms)
    assert settings.retry_max_s() == most_s
    assert settings.retry_max_s() < session_ms / 1000


@pytest.mark.parametrize(
    ("session_ms", "asked_ms", "interval_ms"),
    [(3000, None, 6000), (6000, None, 12_000), (6000, 30_000, 30_000), (6000, 2000, 6000)],
)
def test_a_kafka_member_may_take_longer_than_its_session_between_polls(
    session_ms: int, asked_ms: int | None, interval_ms: int
) -> None:
    """Twice the session unless set, and never less than the session (librdkafka
    refuses a poll interval below it)."""
    settings = Settings(session_timeout_ms=session_ms, max_poll_interval_ms=asked_ms)
    assert settings.max_poll_interval() == interval_ms
