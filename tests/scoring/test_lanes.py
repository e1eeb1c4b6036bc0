"""Several live versions of one name: one lane (consumer group) each, on SQLite with real
ONNX models. Both versions score every request, and a promotion that moves versions
between lanes skips none."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from modelstream.models.refs import ModelRef
from modelstream.scoring.config import ScorerConfig
from modelstream.scoring.pool import ScorerPool
from modelstream.wire.scores import Score
from modelstream.wire.topics import ServiceTopics

from .conftest import Env, Models
from .harness import Load, Watcher, make_request, send, wait_until

pytestmark = pytest.mark.integration

CONFIG = ScorerConfig(max_batch=32, max_wait_ms=1.0, timeout_ms=5000, poll_timeout_s=0.05)


def versions(scores: list[Score]) -> set[int]:
    assert all(s.ok for s in scores), [s.error for s in scores if not s.ok]
    return {s.version for s in scores if s.model == "lr"}


def check_outputs(
    models: Models, sent: dict[str, np.ndarray], by_id: dict[str, list[Score]]
) -> None:
    ids = list(sent)
    want = {v: models.expected(models.lr[v - 1], np.stack([sent[i] for i in ids])) for v in (1, 2)}
    for row, rid in enumerate(ids):
        for s in by_id[rid]:
            assert s.outputs is not None
            proba = next(t for t in s.outputs if t.name == "probabilities").data
            np.testing.assert_allclose(proba, want[s.version][row].ravel(), atol=1e-5)


def test_a_champion_and_a_challenger_of_one_name_both_score_every_request(
    sqlite_env: Env, onnx_models: Models
) -> None:
    env, reg = sqlite_env, sqlite_env.registry
    reg.publish(env.service, "lr", onnx_models.lr[0], format="onnx")
    reg.publish(env.service, "lr", onnx_models.lr[1], format="onnx")
    reg.deploy(env.service, ModelRef("lr", 1), challengers=[ModelRef("lr", 2)])
    watcher = Watcher(env.backplane, env.service)
    with ScorerPool(env.backplane, env.settings, env.service, config=CONFIG) as pool:
        assert pool.wait_for({"lr", "lr@2"}, 60)
        assert {lane: s.serving for lane, s in pool.scorers.items()} == {
            "lr": ModelRef("lr", 1),
            "lr@2": ModelRef("lr", 2),
        }
        requests = [make_request(env.service, row) for row in onnx_models.x[:40]]
        # A target naming one version is answered by its lane alone, without errors.
        targeted = make_request(env.service, onnx_models.x[0], target="lr@2")
        send(env.backplane, env.service, [*requests, targeted])
        got = watcher.wait_scores({r.id for r in requests}, 2, timeout=60)
        for r in requests:
            assert versions(got[r.id]) == {1, 2}
            assert {s.role for s in got[r.id]} == {"champion", "challenger"}
        check_outputs(onnx_models, {r.id: onnx_models.x[i] for i, r in enumerate(requests)}, got)
        watcher.wait_scores({targeted.id}, 1, timeout=10)
        assert [s.version for s in watcher.by_request()[targeted.id]] == [2]
        groups = {
            g.group
            for g in env.backplane.describe_topic(ServiceTopics(env.service).requests).groups
        }
        assert groups == {"svc.scorer.lr", "svc.scorer.lr@2"}
    watcher.close()


def test_promoting_the_challenger_swaps_lanes_without_skipping_a_request(
    sqlite_env: Env, onnx_models: Models
) -> None:
    env, reg = sqlite_env, sqlite_env.registry
    reg.publish(env.service, "lr", onnx_models.lr[0], format="onnx")
    reg.publish(env.service, "lr", onnx_models.lr[1], format="onnx")
    reg.deploy(env.service, ModelRef("lr", 1), challengers=[ModelRef("lr", 2)])
    watcher = Watcher(env.backplane, env.service)
    pool = ScorerPool(env.backplane, env.settings, env.service, config=CONFIG).start()
    try:
        assert pool.wait_for({"lr", "lr@2"}, 60)
        with Load(env.backplane, env.service, onnx_models.x, batch=2) as load:
            wait_until(lambda: len(load.sent) > 40, 30, "some traffic before the promotion")
            promoted = reg.promote(env.service, ModelRef("lr", 2), reason="lr@2 wins")
            assert {k: str(m.ref) for k, m in promoted.lanes().items()} == {
                "lr": "lr@2",
                "lr@1": "lr@1",
            }
            watcher.wait_event("swapped", 2, 30, model="lr")

            def settled() -> bool:
                lanes = {lane: s.serving for lane, s in pool.scorers.items()}
                done = lanes == {"lr": ModelRef("lr", 2), "lr@1": ModelRef("lr", 1)}
                return done and not pool.draining

            wait_until(settled, 60, "lane lr to serve lr@2 and lane lr@2 to drain")
            before = len(load.sent)
            wait_until(lambda: len(load.sent) > before + 40, 30, "traffic after the promotion")
        sent = dict(load.sent)
        got = watcher.wait_scores(set(sent), 2, timeout=60)
    finally:
        pool.stop()
        watcher.close()
    assert len(sent) > 80
    missing: dict[int, list[str]] = defaultdict(list)
    for rid in sent:
        for v in {1, 2} - versions(got[rid]):
            missing[v].append(rid)
    assert not missing, {v: len(ids) for v, ids in missing.items()}
    check_outputs(onnx_models, sent, got)
    # After the promotion lr@2 answers as champion and lr@1 as challenger.
    last = got[list(sent)[-1]]
    assert {(s.version, s.role) for s in last} == {(2, "champion"), (1, "challenger")}
