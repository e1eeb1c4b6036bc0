"""The issue's proof: under continuous load, ten new versions deployed one after another;
every request gets exactly one score from each live model, none is an error, and each
score names the version that computed it (checked against that version's own outputs)."""

from __future__ import annotations

import numpy as np
import pytest

from modelstream.models.refs import ModelRef
from modelstream.scoring.config import ScorerConfig
from modelstream.scoring.pool import ScorerPool

from .conftest import VERSIONS, Env, Models
from .harness import Load, Watcher, wait_until

CONFIG = ScorerConfig(max_batch=64, max_wait_ms=1.0, timeout_ms=5000, poll_timeout_s=0.05)


def ten_versions_under_load(env: Env, models: Models, swap_timeout: float) -> None:
    bp, registry, service = env.backplane, env.registry, env.service
    registry.publish(service, "tree", models.tree, format="onnx")
    registry.publish(service, "lr", models.lr[0], format="onnx")
    registry.deploy(service, ModelRef("lr", 1), challengers=[ModelRef("tree", 1)])
    watcher = Watcher(bp, service)
    pool = ScorerPool(bp, env.settings, service, config=CONFIG).start()
    try:
        assert pool.wait_for({"lr", "tree"}, timeout=60)
        with Load(bp, service, models.x, batch=2) as load:
            for version in range(2, VERSIONS + 2):
                registry.publish(service, "lr", models.lr[version - 1], format="onnx")
                registry.deploy(service, ModelRef("lr", version), challengers=[ModelRef("tree", 1)])
                watcher.wait_event("swapped", version, swap_timeout, model="lr")

                def new_version_scored(v: int = version) -> bool:
                    watcher.drain()
                    return any(s.model == "lr" and s.version == v for s in watcher.scores)

                wait_until(new_version_scored, swap_timeout, f"a score by lr@{version}")
        sent = load.sent
        by_request = watcher.wait_scores(set(sent), 2, timeout=60)
        stats = {str(s.ref): s for s in pool.stats()}
    finally:
        pool.stop()
        watcher.close()

    assert len(sent) > 100
    expected = {
        v: models.expected(models.lr[v - 1], np.stack(list(sent.values())))
        for v in range(1, VERSIONS + 2)
    }
    index = {rid: i for i, rid in enumerate(sent)}
    tree_expected = models.expected(models.tree, np.stack(list(sent.values())))
    for rid in sent:
        scores = by_request[rid]
        assert sorted(s.model for s in scores) == ["lr", "tree"], (rid, scores)
        for s in scores:
            assert s.ok, s.error
            assert s.outputs is not None
            proba = np.asarray(next(t for t in s.outputs if t.name == "probabilities").data)
            want = tree_expected if s.model == "tree" else expected[s.version]
            np.testing.assert_allclose(proba, want[index[rid]].ravel(), atol=1e-5)
    versions = {s.version for s in watcher.scores if s.model == "lr"}
    assert versions >= set(range(2, VERSIONS + 2))
    assert stats[f"lr@{VERSIONS + 1}"].errors == 0 and stats["tree@1"].errors == 0
    swaps = [e for e in watcher.events if e.event == "swapped" and e.model == "lr"]
    assert [e.version for e in swaps] == list(range(1, VERSIONS + 2))
    assert all(e.timings_ms["total"] >= e.timings_ms["warm"] for e in swaps)
    assert not [e for e in watcher.events if e.event == "load_failed"]


@pytest.mark.integration
@pytest.mark.slow
def test_ten_versions_under_load_on_sqlite(sqlite_env: Env, onnx_models: Models) -> None:
    ten_versions_under_load(sqlite_env, onnx_models, swap_timeout=20)


@pytest.mark.integration
@pytest.mark.kafka
@pytest.mark.slow
def test_ten_versions_under_load_on_kafka(kafka_env: Env, onnx_models: Models) -> None:
    ten_versions_under_load(kafka_env, onnx_models, swap_timeout=30)
