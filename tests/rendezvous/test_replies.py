"""Replies lost in a crash: which answers are sent again, once, and which are not."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from modelstream.backplane.memory import MemoryBackplane
from modelstream.backplane.records import OutRecord, Record, now_ms
from modelstream.rendezvous import replies
from modelstream.rendezvous.replies import LostReplies
from tests.rendezvous.factories import read_all, request

REPLIES = "fraud.replies.gw1"


@pytest.fixture
def backplane() -> Iterator[MemoryBackplane]:
    bp = MemoryBackplane()
    bp.create_topic(REPLIES, 2)
    yield bp
    bp.close()


def answer(rid: str, partition: int = 0) -> Record:
    """An answer as a takeover reads it back from ``results``."""
    return Record("fraud.results", partition, 0, now_ms(), rid.encode(), f"answer {rid}".encode())


def read_again(lost: LostReplies, *rids: str, reply_to: str | None = REPLIES) -> None:
    for rid in rids:
        lost.on_request(request(rid, now_ms(), reply_to=reply_to))


def test_only_the_answers_whose_reply_is_missing_are_sent_again(
    backplane: MemoryBackplane,
) -> None:
    backplane.produce(REPLIES, [OutRecord(b"answer a", b"a")])  # a's reply got through
    lost = LostReplies(backplane)
    lost.remember({rid: answer(rid) for rid in ("a", "b", "c")})
    read_again(lost, "a", "b", "c")
    assert lost.resend() == 0  # held: more redelivered requests may come in the next step
    assert lost.resend() == 2  # a step that read none: checked and sent
    sent = read_all(backplane, REPLIES, expect=3, settle=0.1)
    assert sorted((r.key, r.value) for r in sent) == [
        (b"a", b"answer a"),
        (b"b", b"answer b"),
        (b"c", b"answer c"),
    ]
    assert lost.resend() == 0  # nothing noted twice
    read_again(lost, "b")  # read again once more: no longer remembered
    assert lost.resend() == 0


def test_noted_answers_wait_at_most_the_hold(backplane: MemoryBackplane) -> None:
    lost = LostReplies(backplane)
    lost.remember({"a": answer("a"), "b": answer("b")})
    read_again(lost, "a")
    time.sleep(replies.HOLD_S)
    read_again(lost, "b")  # still redelivering, but the first has waited long enough
    assert lost.resend() == 2


def test_requests_without_a_reply_address_and_handed_over_partitions_are_not_sent(
    backplane: MemoryBackplane,
) -> None:
    lost = LostReplies(backplane)
    lost.remember({"stream": answer("stream"), "moved": answer("moved", partition=1)})
    lost.forget([1])
    read_again(lost, "stream", reply_to=None)  # its caller reads results
    read_again(lost, "moved")  # the partition's new owner sends it
    assert [lost.resend(), lost.resend()] == [0, 0]  # nothing noted: nothing held either
    assert read_all(backplane, REPLIES, expect=1, timeout=0.3) == []


def test_a_reply_topic_that_is_gone_is_given_up_with_a_warning(
    backplane: MemoryBackplane, caplog: pytest.LogCaptureFixture
) -> None:
    lost = LostReplies(backplane)
    lost.remember({"a": answer("a"), "b": answer("b")})
    read_again(lost, "a", reply_to="fraud.replies.gone")
    read_again(lost, "b")
    assert [lost.resend(), lost.resend()] == [0, 1]  # held, then b still reaches its caller
    assert "not sent to fraud.replies.gone, which no longer exists" in caplog.text
