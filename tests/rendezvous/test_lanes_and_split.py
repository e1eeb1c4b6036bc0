"""The rendezvous with several live versions of one name (it chooses by ref), and the
A/B split, driven through the mailbox book with a manual clock."""

from __future__ import annotations

import dataclasses

import msgspec

from modelstream.models.deployment import Deployment, LiveModel, Policy, PolicyKind, Role
from modelstream.models.refs import ModelRef
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.results import Result
from tests.rendezvous.factories import deployment, request
from tests.rendezvous.test_policies import REQ, Desk

OLD, NEW, LR = "gbm@1", "gbm@2", "lr@1"


def two_gbms(**kw: object) -> Deployment:
    return deployment((OLD, Role.CHAMPION, 30), (NEW, Role.CHALLENGER, 20), **kw)  # type: ignore[arg-type]


def test_two_versions_of_one_name_are_told_apart_by_ref() -> None:
    desk = Desk(two_gbms())
    desk.req("r1")
    assert desk.score("r1", NEW, 2) == []  # the champion gbm@1 may still come
    [result] = desk.score("r1", OLD, 1)
    assert result.ref == OLD and result.answers == (NEW, OLD) and result.missing == ()

    desk.dep = two_gbms(order=(NEW, "gbm"))  # a ref first, then the rest of the name
    desk.req("r2")
    assert desk.score("r2", OLD, 1) == []  # gbm@2 is preferred now
    [result] = desk.score("r2", NEW, 2)
    assert result.ref == NEW


def test_a_target_picks_the_version_and_a_bare_name_means_its_best_role() -> None:
    desk = Desk(two_gbms())
    desk.req("r1", target=NEW)
    assert desk.score("r1", OLD, 1) == []
    [result] = desk.score("r1", NEW, 2)
    assert result.ref == NEW and result.policy == "target"
    desk.req("r2", target="gbm")
    assert desk.score("r2", NEW, 2) == []
    [result] = desk.score("r2", OLD, 1)
    assert result.ref == OLD


def test_consensus_counts_each_version_as_a_voter() -> None:
    dep = deployment(
        (OLD, Role.CHAMPION), (NEW, Role.CHALLENGER), (LR, Role.CHALLENGER),
        kind=PolicyKind.CONSENSUS, min_answers=2,
    )  # fmt: skip
    desk = Desk(dep)
    desk.req("r1")
    assert desk.score("r1", LR, 0) == []
    assert desk.score("r1", NEW, 1) == []  # 1 against 1, gbm@1 still awaited
    [result] = desk.score("r1", OLD, 1)
    assert result.ref == OLD and result.outputs is not None and result.outputs[0].data == (1,)


def split(weights: tuple[float, float]) -> Deployment:
    models = (
        LiveModel(ModelRef.parse(OLD), Role.CHAMPION, None, weights[0]),
        LiveModel(ModelRef.parse(NEW), Role.CHALLENGER, 20, weights[1]),
    )
    return Deployment("fraud", models, policy=Policy(split=True))


def entity_for(dep: Deployment, ref: str) -> str:
    from modelstream.models.deployment import split_choice

    return next(e for e in (f"user-{i}" for i in range(1000)) if split_choice(dep, e) == ref)


def send(desk: Desk, rid: str, entity: str) -> list[Result]:
    req: InferenceRequest = msgspec.structs.replace(
        request(rid, desk.clock.now_ms(), 100), entity=entity
    )
    desk.offset += 1
    return desk._keep(desk.book.on_request(req, REQ, desk.offset, desk.clock.now_ms()))


def test_a_split_answers_with_the_entity_s_model_and_falls_back_after_its_wait() -> None:
    dep = split((0.5, 0.5))
    desk = Desk(dep)
    to_new, to_old = entity_for(dep, NEW), entity_for(dep, OLD)

    send(desk, "r1", to_new)
    assert desk.score("r1", OLD, 1) == []  # the champion answered, but r1's model is gbm@2
    [result] = desk.score("r1", NEW, 2)
    assert result.ref == NEW

    send(desk, "r2", to_old)
    [result] = desk.score("r2", OLD, 1)  # the split's choice is also the best: at once
    assert result.ref == OLD

    send(desk, "r3", to_new)  # gbm@2 never answers: after its 20 ms wait, preference
    desk.score("r3", OLD, 1)
    assert desk.advance(19) == []
    [result] = desk.advance(1)
    assert result.ref == OLD

    desk.dep = dataclasses.replace(dep, policy=Policy(split=False))
    send(desk, "r4", to_new)
    [result] = desk.score("r4", OLD, 1)  # no split: the champion at once
    assert result.ref == OLD
