"""The rule every role's stop() follows before closing what its thread uses."""

from __future__ import annotations

import logging
import threading

import pytest

from modelstream.threads import ended


def test_a_thread_never_started_or_already_gone_has_ended() -> None:
    assert ended(None, 0.1, "nothing")
    assert ended(threading.Thread(target=lambda: None), 0.1, "never started")
    done = threading.Thread(target=lambda: None)
    done.start()
    assert ended(done, 5.0, "quick")
    assert not done.is_alive()


def test_the_calling_thread_itself_may_close_its_resources() -> None:
    assert ended(threading.current_thread(), 0.0, "me")


def test_a_thread_that_outlives_the_timeout_has_not_ended_and_is_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = threading.Event()
    stuck = threading.Thread(target=release.wait, args=(10,), daemon=True)
    stuck.start()
    try:
        with caplog.at_level(logging.WARNING, logger="modelstream.threads"):
            assert not ended(stuck, 0.05, "the monitor of fraud")
        assert "the monitor of fraud did not stop within 0.1 s" in caplog.text
        assert stuck.is_alive()
    finally:
        release.set()
        stuck.join()
    assert ended(stuck, 1.0, "the monitor of fraud")
