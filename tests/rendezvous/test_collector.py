"""What the rendezvous's open and decided requests cost the cyclic garbage collector.

A decided mailbox is kept for late answers until a late window after its deadline, so
under streaming load tens of thousands of requests are held at once. Every object the
collector tracks is walked by each collection, with every thread of the process stopped:
the records of the request path (requests, scores, their tensors, results, the mailbox's
answers) are left out of it (``gc=False``, see ``modelstream.wire.tensors.Tensor``), and
this is the check.
"""

from __future__ import annotations

import gc

from modelstream.backplane.records import TopicPartition
from modelstream.models.deployment import Role
from modelstream.rendezvous.book import MailboxBook
from modelstream.rendezvous.policies import standard_policies
from modelstream.wire.requests import decode_request
from modelstream.wire.scores import decode_score
from tests.rendezvous.factories import deployment, request, score

REQ = TopicPartition("fraud.requests", 0)
SCO = TopicPartition("fraud.scores", 0)
MODELS = ("gbm@1", "lr@1", "tree@1")
HELD = 1_000


def _tracked() -> int:
    gc.collect()  # also stops tracking tuples that hold only untracked values
    return len(gc.get_objects())


def test_a_request_held_for_late_answers_adds_a_handful_of_objects_to_every_collection() -> None:
    dep = deployment(
        *((m, Role.CHAMPION if i == 0 else Role.CHALLENGER) for i, m in enumerate(MODELS))
    )
    book = MailboxBook("fraud", lambda: dep, standard_policies(None), late_window_ms=60_000)
    now = 1_000_000
    before = _tracked()
    decided = 0
    for i in range(HELD):
        rid = f"r{i}"
        # Decoded from bytes, as the rendezvous reads them off the backplane.
        book.on_request(decode_request(request(rid, now, 5_000).encode()), REQ, i, now)
        for model in MODELS:
            emits = book.on_score(decode_score(score(rid, model).encode()), SCO, i, now)
            decided += sum(1 for e in emits if not e.late)
    per_request = (_tracked() - before) / HELD

    assert decided == HELD  # each decided at once (the champion answered), then held
    assert len(book.open) == 0 and book.is_answered("r0")
    # The mailbox, its list of held offsets and its entry among the decided: 3 objects
    # (about 25 while the records and answers were tracked: 7 tensors, 3 scores, ...).
    assert per_request <= 4, f"{per_request:.1f} tracked objects per held request"
