"""Each policy, driven through the mailbox book with a manual clock (no I/O, no sleeps)."""

from __future__ import annotations

import pytest

from modelstream.backplane.records import TopicPartition
from modelstream.clock import ManualClock
from modelstream.models.deployment import Deployment, Fallback, PolicyKind, Role
from modelstream.models.refs import ModelRef
from modelstream.rendezvous.book import Emit, MailboxBook
from modelstream.rendezvous.policies import standard_policies
from modelstream.wire.results import Result
from tests.rendezvous.factories import deployment, request, score

REQ = TopicPartition("fraud.requests", 0)
SCO = TopicPartition("fraud.scores", 0)
CHAMP, CHALL, CANARY, DECOY = "gbm@3", "lr@2", "mlp@1", "dummy@1"


class Desk:
    """A book, a clock and a mutable deployment: the rendezvous without the backplane."""

    def __init__(self, dep: Deployment, quality: object = None) -> None:
        self.clock = ManualClock(1_000_000)
        self.dep: Deployment | None = dep
        self.book = MailboxBook("fraud", lambda: self.dep, standard_policies(quality))  # type: ignore[arg-type]
        self.out: list[Emit] = []
        self.offset = 0

    def req(self, rid: str, deadline_in: int = 100, **kw: object) -> list[Result]:
        self.offset += 1
        req = request(rid, self.clock.now_ms(), deadline_in, **kw)  # type: ignore[arg-type]
        return self._keep(self.book.on_request(req, REQ, self.offset, self.clock.now_ms()))

    def score(self, rid: str, ref: str, label: int | float = 1, **kw: object) -> list[Result]:
        self.offset += 1
        s = score(rid, ref, label, **kw)  # type: ignore[arg-type]
        return self._keep(self.book.on_score(s, SCO, self.offset, self.clock.now_ms()))

    def advance(self, ms: int) -> list[Result]:
        """Advance in 1 ms steps, firing timers exactly when they are due."""
        found: list[Result] = []
        for _ in range(ms):
            self.clock.advance(1)
            found += self._keep(self.book.tick(self.clock.now_ms()))
        return found

    def _keep(self, emits: list[Emit]) -> list[Result]:
        self.out += emits
        return [e.result for e in emits if not e.late]


def pref(*extra: tuple[str, Role, int | None], **kw: object) -> Deployment:
    base = ((CHAMP, Role.CHAMPION, 30), (CHALL, Role.CHALLENGER, None))
    return deployment(*base, *extra, **kw)  # type: ignore[arg-type]


def test_preference_answers_at_once_when_the_champion_answers_first() -> None:
    desk = Desk(pref())
    assert desk.req("r1") == []
    [result] = desk.score("r1", CHAMP, 7)
    assert (result.model, result.version, result.policy) == ("gbm", 3, "preference")
    assert result.outputs is not None and result.outputs[0].data == (7,)
    assert result.deadline_met and not result.fallback and result.missing == (CHALL,)


def test_preference_waits_for_a_better_model_then_takes_it() -> None:
    desk = Desk(pref())
    desk.req("r1")
    assert desk.score("r1", CHALL, 2) == []  # the champion may still come within 30 ms
    assert desk.advance(10) == []
    [result] = desk.score("r1", CHAMP, 1)
    assert result.ref == CHAMP and result.answers == (CHALL, CHAMP)


def test_preference_takes_the_next_model_when_the_better_ones_wait_runs_out() -> None:
    desk = Desk(pref())
    desk.req("r1")
    desk.score("r1", CHALL, 2)
    assert desk.advance(29) == []
    [result] = desk.advance(1)  # exactly at the champion's 30 ms wait
    assert result.ref == CHALL and result.decided_at == 1_000_030 and result.missing == (CHAMP,)
    assert result.decided_in_ms == 30


def test_decided_in_counts_from_arrival_when_a_streamed_request_has_no_sent_at() -> None:
    desk = Desk(pref())
    hour_ago = desk.clock.now_ms() - 3_600_000  # the data's time, not the request's
    desk.req("r1", sent=False, event_time=hour_ago)
    desk.score("r1", CHALL, 2)
    [result] = desk.advance(30)
    assert result.ref == CHALL and result.decided_in_ms == 30
    # A request that says when it was sent counts from then (a redelivery keeps it).
    desk.req("r2", sent_at=desk.clock.now_ms() - 12)
    [result] = desk.score("r2", CHAMP, 1)
    assert result.decided_in_ms == 12


def test_preference_skips_an_erroring_model_at_once() -> None:
    desk = Desk(pref())
    desk.req("r1")
    assert desk.score("r1", CHAMP, error="boom") == []  # challenger may still answer
    [result] = desk.score("r1", CHALL, 2)
    assert result.ref == CHALL and result.answers == (CHAMP, CHALL)


def test_every_model_erroring_answers_the_fallback_outputs_early() -> None:
    fallback = Fallback(({"name": "label", "datatype": "INT64", "shape": [1], "data": [0]},))
    desk = Desk(pref(fallback=fallback))
    desk.req("r1")
    desk.score("r1", CHAMP, error="boom")
    [result] = desk.score("r1", CHALL, error="bang")
    assert result.fallback and result.error is None and result.model is None
    assert result.outputs is not None and result.outputs[0].data == (0,)
    assert not result.deadline_met


def test_no_answer_by_the_deadline_is_an_explicit_miss_without_fallback() -> None:
    desk = Desk(pref())
    desk.req("r1", deadline_in=50)
    assert desk.advance(44) == []
    [result] = desk.advance(1)  # the 5 ms margin: decided before the deadline
    assert result.error is not None and result.error.startswith("deadline missed")
    assert result.outputs is None and not result.fallback and result.decided_at <= result.deadline
    assert result.missing == (CHAMP, CHALL) and result.decided_in_ms == 45
    assert desk.advance(100) == []  # exactly one answer


def test_a_model_past_its_wait_still_beats_the_fallback_before_the_deadline() -> None:
    desk = Desk(deployment((CHAMP, Role.CHAMPION, 10)))
    desk.req("r1")
    assert desk.advance(20) == []
    [result] = desk.score("r1", CHAMP, 1)
    assert result.ref == CHAMP


def test_canary_decoy_and_not_live_versions_are_recorded_never_chosen() -> None:
    desk = Desk(pref((CANARY, Role.CANARY, None), (DECOY, Role.DECOY, None)))
    desk.req("r1", deadline_in=50)
    for ref in (CANARY, DECOY, "gbm@2"):  # gbm@2 is not the live version
        assert desk.score("r1", ref) == []
    [result] = desk.advance(50)
    assert result.error is not None and result.answers == (CANARY, DECOY, "gbm@2")


def test_duplicate_scores_and_requests_are_ignored() -> None:
    desk = Desk(pref())
    desk.req("r1")
    desk.score("r1", CHALL, 2)
    assert desk.score("r1", CHALL, 9) == []  # redelivered: first one wins
    assert desk.req("r1") == []
    [result] = desk.score("r1", CHAMP, error="x")
    assert result.ref == CHALL and result.outputs is not None and result.outputs[0].data == (2,)
    assert desk.req("r1") == [] and desk.advance(2_000) == []
    assert desk.req("r1") == []  # still remembered after the late window closed
    assert len([e for e in desk.out if not e.late]) == 1


def test_scores_before_their_request_are_held_and_used() -> None:
    desk = Desk(pref())
    assert desk.score("r1", CHAMP, 5) == []
    assert desk.book.held_offsets() == {SCO: 1}
    [result] = desk.req("r1")
    assert result.ref == CHAMP
    assert desk.book.held_offsets() == {}


def test_open_mailboxes_hold_their_offsets_until_decided() -> None:
    desk = Desk(pref())
    desk.req("r1")
    desk.score("r1", CHALL)
    assert desk.book.held_offsets() == {REQ: 1, SCO: 2}
    desk.advance(30)
    assert desk.book.held_offsets() == {}


def test_late_answers_make_a_second_marked_record() -> None:
    desk = Desk(pref())
    desk.req("r1")
    [answer] = desk.score("r1", CHAMP)
    desk.score("r1", CHALL)
    desk.advance(1_100)
    late = [e for e in desk.out if e.late]
    assert len(late) == 1 and late[0].result.late == (CHALL,) and late[0].reply_to is None
    assert late[0].result.model == answer.model


def test_first_takes_the_first_answer_that_is_not_an_error() -> None:
    desk = Desk(pref(kind=PolicyKind.FIRST))
    desk.req("r1")
    assert desk.score("r1", CHALL, error="boom") == []
    [result] = desk.score("r1", CHAMP, 4)
    assert result.ref == CHAMP and result.policy == "first"


def test_first_ignores_a_canary_even_when_it_is_first() -> None:
    desk = Desk(pref((CANARY, Role.CANARY, None), kind=PolicyKind.FIRST))
    desk.req("r1")
    assert desk.score("r1", CANARY) == []
    [result] = desk.score("r1", CHALL)
    assert result.ref == CHALL


def three(kind: PolicyKind = PolicyKind.CONSENSUS, **kw: object) -> Deployment:
    return deployment(
        (CHAMP, Role.CHAMPION),
        (CHALL, Role.CHALLENGER),
        ("rf@1", Role.CHALLENGER),
        kind=kind,
        **kw,  # type: ignore[arg-type]
    )


def test_consensus_vote_decides_as_soon_as_the_majority_is_settled() -> None:
    desk = Desk(three(min_answers=2))
    desk.req("r1")
    assert desk.score("r1", CHAMP, 1) == []
    assert desk.score("r1", CHALL, 0) == []  # 1-1 with one to come: not settled
    [result] = desk.score("r1", "rf@1", 0)
    assert result.outputs is not None and result.outputs[0].data == (0,)
    assert result.ref == CHALL and result.policy == "consensus"  # best-ranked of the winners


def test_consensus_vote_two_agreeing_settle_before_the_third() -> None:
    desk = Desk(three(min_answers=2))
    desk.req("r1")
    desk.score("r1", "rf@1", 1)
    [result] = desk.score("r1", CHALL, 1)
    assert result.ref == CHALL and result.missing == (CHAMP,)


def test_consensus_vote_tie_at_the_deadline_goes_to_the_best_ranked() -> None:
    desk = Desk(three(min_answers=2))
    desk.req("r1", deadline_in=40)
    desk.score("r1", "rf@1", 0)
    desk.score("r1", CHAMP, 1)
    [result] = desk.advance(40)
    assert result.ref == CHAMP and result.outputs is not None and result.outputs[0].data == (1,)


def test_consensus_mean_of_k_of_n_waits_for_all_or_the_deadline() -> None:
    desk = Desk(three(min_answers=2, combine="mean"))
    desk.req("r1", deadline_in=40)
    desk.score("r1", CHAMP, 1.0)
    assert desk.score("r1", CHALL, 2.0) == []  # rf@1 still awaited
    [result] = desk.advance(40)
    assert result.outputs is not None and result.outputs[0].data == (1.5,)
    assert result.ref == CHAMP and result.outputs[1].name == "probabilities"


def test_consensus_with_fewer_than_k_answers_falls_back() -> None:
    desk = Desk(three(min_answers=3))
    desk.req("r1", deadline_in=40)
    desk.score("r1", CHAMP, 1)
    desk.score("r1", CHALL, 1)
    [result] = desk.score("r1", "rf@1", error="boom")  # 3 of 3 cannot be reached any more
    assert result.error is not None and result.error.startswith("no acceptable answer")


class Measured:
    def quality(self, service: str, ref: ModelRef) -> float | None:
        return {"lr": 0.9, "gbm": 0.7}.get(ref.name)


def test_quality_prefers_the_best_measured_model(caplog: pytest.LogCaptureFixture) -> None:
    desk = Desk(pref(kind=PolicyKind.QUALITY), quality=Measured())
    desk.req("r1")
    assert desk.score("r1", CHAMP) == []  # lr measures better and has no wait limit
    [result] = desk.score("r1", CHALL)
    assert result.ref == CHALL and result.policy == "quality"
    assert not [r for r in caplog.records if "quality policy" in r.getMessage()]


def test_quality_without_measurements_behaves_as_preference(
    caplog: pytest.LogCaptureFixture,
) -> None:
    desk = Desk(pref(kind=PolicyKind.QUALITY))
    desk.req("r1")
    [result] = desk.score("r1", CHAMP)
    desk.req("r2")
    desk.score("r2", CHAMP)
    # Said once, not per request: nothing in this process measures quality.
    warnings = [r for r in caplog.records if "quality policy" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
    assert "no monitor runs in this process" in warnings[0].getMessage()
    assert result.ref == CHAMP


def test_a_targeted_request_is_answered_by_its_model_alone() -> None:
    desk = Desk(pref())
    desk.req("r1", target=CHALL)
    assert desk.score("r1", CHAMP) == []
    [result] = desk.score("r1", CHALL, error="model crashed")
    assert result.policy == "target" and result.ref == CHALL and result.error == "model crashed"


def test_a_request_past_its_deadline_on_arrival_is_answered_at_once() -> None:
    desk = Desk(pref())
    [result] = desk.req("r1", deadline_in=-1_000)
    assert result.error is not None and result.error.startswith("deadline missed")


def test_the_policy_in_force_at_decision_time_is_used() -> None:
    desk = Desk(pref())
    desk.req("r1")
    desk.req("r2")
    desk.dep = pref(kind=PolicyKind.FIRST)  # switched while r1 and r2 are open
    [result] = desk.score("r1", CHALL)
    assert result.policy == "first" and result.ref == CHALL


def test_without_a_deployment_only_the_deadline_answers() -> None:
    desk = Desk(pref())
    desk.dep = None
    desk.req("r1", deadline_in=20)
    assert desk.score("r1", CHAMP) == []
    [result] = desk.advance(20)
    assert result.error is not None and "no deployment" in result.error
