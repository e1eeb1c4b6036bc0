"""The scorer's handling of each kind of request, and the pool, on the memory engine
with the real registry and loaders."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import msgspec
import numpy as np
import pytest

from modelstream.backplane.partitioner import partition_for
from modelstream.backplane.records import OutRecord
from modelstream.errors import ConfigurationError
from modelstream.models.refs import ModelRef
from modelstream.scoring.config import ScorerConfig, scorer_group
from modelstream.scoring.pool import ScorerPool
from modelstream.scoring.scorer import Scorer
from modelstream.wire.scores import decode_score
from modelstream.wire.tensors import Tensor, array_to_tensor
from modelstream.wire.topics import ServiceTopics

from .conftest import Env, Models
from .harness import Load, Watcher, make_request, send, wait_until

CONFIG = ScorerConfig(max_batch=16, max_wait_ms=1.0, timeout_ms=2000, poll_timeout_s=0.05)


@pytest.fixture
def running(memory_env: Env, onnx_models: Models) -> Iterator[tuple[Scorer, Watcher]]:
    env = memory_env
    env.registry.publish(env.service, "lr", onnx_models.lr[0], format="onnx")
    env.registry.deploy(env.service, ModelRef("lr", 1))
    watcher = Watcher(env.backplane, env.service)
    with Scorer(env.backplane, env.settings, env.service, "lr", config=CONFIG) as scorer:
        assert scorer.wait_ready(20)
        yield scorer, watcher
    watcher.close()


def test_every_kind_of_request_gets_what_the_contract_says(
    memory_env: Env, onnx_models: Models, running: tuple[Scorer, Watcher]
) -> None:
    env, (_, watcher) = memory_env, running
    x = onnx_models.x
    ok = make_request(env.service, x[0])
    two_rows = make_request(env.service, x[1])
    two_rows = msgspec.structs.replace(two_rows, inputs=(array_to_tensor("input", x[1:3]),))
    expired = make_request(env.service, x[2], deadline_ms=-10)
    other_model = make_request(env.service, x[3], target="tree@1")
    this_model = make_request(env.service, x[4], target="lr@1")
    wrong_version = make_request(env.service, x[5], target="lr@7")
    bad_input = make_request(env.service, x[6])
    bad_input = msgspec.structs.replace(
        bad_input, inputs=(Tensor("input", "FP32", (1, 2), (1.0, 2.0)),)
    )
    requests = [ok, two_rows, expired, other_model, this_model, wrong_version, bad_input]
    send(env.backplane, env.service, requests)
    env.backplane.produce(
        ServiceTopics(env.service).requests, [OutRecord(b"{not json", key=b"junk")]
    )
    answered = {r.id for r in requests} - {other_model.id}
    got = watcher.wait_scores(answered, 1, timeout=20)

    def wait_dead() -> bool:
        watcher.drain()
        return bool(watcher.dead_letters)

    wait_until(wait_dead, 10, "the dead letter")
    assert all(len(got[i]) == 1 for i in answered)
    assert got[ok.id][0].ok and got[this_model.id][0].ok
    assert (got[ok.id][0].model, got[ok.id][0].version, got[ok.id][0].role) == ("lr", 1, "champion")
    assert got[expired.id][0].error.startswith("expired")  # type: ignore[union-attr]
    assert "lr@7 is not serving" in (got[wrong_version.id][0].error or "")
    assert "invalid input" in (got[bad_input.id][0].error or "")
    assert other_model.id not in got
    (dead,) = watcher.dead_letters
    assert dead["x-source-topic"] == ServiceTopics(env.service).requests.encode()
    assert b"not valid JSON" in dead["x-reason"]
    assert got[two_rows.id][0].outputs[0].shape == (2,)  # type: ignore[index]
    # Offsets are committed for everything read, the junk record included.
    requests_topic = ServiceTopics(env.service).requests

    def no_lag() -> bool:
        groups = env.backplane.describe_topic(requests_topic).groups
        return [(g.group, g.total_lag) for g in groups] == [("svc.scorer.lr", 0)]

    wait_until(no_lag, 10, "the scorer's group to commit everything")
    assert scorer_group(env.service, "lr") == "svc.scorer.lr"


def test_batches_use_one_runtime_call_and_scores_carry_the_batch_size(
    memory_env: Env, onnx_models: Models, running: tuple[Scorer, Watcher]
) -> None:
    env, (scorer, watcher) = memory_env, running
    reqs = [make_request(env.service, row) for row in onnx_models.x[:40]]
    send(env.backplane, env.service, reqs)
    got = watcher.wait_scores({r.id for r in reqs}, 1, timeout=20)
    sizes = [got[r.id][0].batch_size for r in reqs]
    assert max(sizes) > 1 and max(sizes) <= CONFIG.max_batch
    want = onnx_models.expected(onnx_models.lr[0], np.stack(onnx_models.x[:40]))
    for i, r in enumerate(reqs):
        outputs = got[r.id][0].outputs
        assert outputs is not None
        proba = next(t for t in outputs if t.name == "probabilities")
        np.testing.assert_allclose(proba.data, want[i], atol=1e-5)
    (stats,) = scorer.stats()
    assert stats.ref == ModelRef("lr", 1) and stats.invocations == 40 and stats.errors == 0
    assert 0 < stats.latency_min <= stats.latency_p50 <= stats.latency_p99 <= stats.latency_max


def test_a_promotion_changes_the_role_without_a_reload(
    memory_env: Env, onnx_models: Models
) -> None:
    env = memory_env
    env.registry.publish(env.service, "lr", onnx_models.lr[0], format="onnx")
    env.registry.publish(env.service, "tree", onnx_models.tree, format="onnx")
    env.registry.deploy(env.service, ModelRef("lr", 1), challengers=[ModelRef("tree", 1)])
    watcher = Watcher(env.backplane, env.service)
    with ScorerPool(env.backplane, env.settings, env.service, config=CONFIG) as pool:
        assert pool.wait_for({"lr", "tree"}, 20)
        env.registry.promote(env.service, ModelRef("tree", 1))
        watcher.wait_event("role_changed", 1, timeout=10, model="tree")
        req = make_request(env.service, onnx_models.x[0])
        send(env.backplane, env.service, [req])
        roles = {s.model: s.role for s in watcher.wait_scores({req.id}, 2, 20)[req.id]}
        assert roles == {"tree": "champion", "lr": "challenger"}
        # Taking a name out of the deployment stops its scorer.
        env.registry.deploy(env.service, ModelRef("tree", 1))
        wait_until(lambda: set(pool.scorers) == {"tree"}, 10, "the lr scorer to stop")
        assert [e.event for e in watcher.events if e.model == "tree"].count("swapped") == 1
    watcher.close()


def test_a_long_commit_interval_still_commits_when_idle_and_on_stop(
    memory_env: Env, onnx_models: Models
) -> None:
    """Commits wait for the interval only while records flow: an idle scorer's offsets are
    current, and a scorer stopped mid-stream commits exactly what it scored."""
    env = memory_env
    settings = env.settings.model_copy(update={"commit_interval_ms": 3_600_000})
    env.registry.publish(env.service, "lr", onnx_models.lr[0], format="onnx")
    env.registry.deploy(env.service, ModelRef("lr", 1))
    requests_topic = ServiceTopics(env.service).requests
    group = scorer_group(env.service, "lr")

    def committed() -> dict[int, int]:
        infos = {g.group: g for g in env.backplane.describe_topic(requests_topic).groups}
        return dict(infos[group].committed) if group in infos else {}

    def next_offsets(ids: set[str]) -> dict[int, int]:
        """Per partition, one past the last request among ``ids``."""
        reader = env.backplane.consumer([requests_topic], start="earliest")
        out: dict[int, int] = {}
        try:
            while batch := reader.poll(5000, 0.05):
                for r in batch:
                    if r.key is not None and r.key.decode() in ids:
                        out[r.partition] = max(out.get(r.partition, 0), r.offset + 1)
        finally:
            reader.close()
        return out

    watcher = Watcher(env.backplane, env.service)
    scorer = Scorer(env.backplane, settings, env.service, "lr", config=CONFIG).start()
    try:
        assert scorer.wait_ready(20)
        first = [make_request(env.service, row) for row in onnx_models.x[:10]]
        send(env.backplane, env.service, first)
        watcher.wait_scores({r.id for r in first}, 1, timeout=20)
        want = next_offsets({r.id for r in first})
        wait_until(lambda: committed() == want, 10, "the idle scorer to commit")

        def flowing() -> bool:
            watcher.drain()
            return len(watcher.scores) > 60

        with Load(env.backplane, env.service, onnx_models.x):
            wait_until(flowing, 20, "scores under load")
            scorer.stop()  # mid-stream: records flowed since the last commit
    finally:
        scorer.stop()
        watcher.drain()
        watcher.close()
    scored = {s.request_id for s in watcher.scores}
    assert len(scored) == len(watcher.scores)  # each scored once
    assert committed() == next_offsets(scored)


class _Batches:
    """A scorer observer that records the size of every batch."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def scorer_batch(self, service: str, model: str, size: int, seconds: float) -> None:
        self.sizes.append(size)

    def model_swapped(self, service: str, model: str) -> None:
        pass


@pytest.mark.parametrize(("wait_ms", "batches"), [(0.0, [1, 1]), (3_000.0, [2])])
def test_the_batch_wait_is_the_operators_setting(
    memory_env: Env, onnx_models: Models, wait_ms: float, batches: list[int]
) -> None:
    """By default a lone request is scored at once; ``batch_wait_ms`` holds it that long
    for more to fill the batch. Both the scorer and the pool take it from the settings."""
    env = memory_env
    settings = env.settings.model_copy(update={"batch_wait_ms": wait_ms})
    assert ScorerConfig().max_wait_ms == 0.0
    env.registry.publish(env.service, "lr", onnx_models.lr[0], format="onnx")
    env.registry.deploy(env.service, ModelRef("lr", 1))
    watcher = Watcher(env.backplane, env.service)
    observer = _Batches()
    pool = ScorerPool(env.backplane, settings, env.service, observer=observer)
    assert pool.config.max_wait_ms == wait_ms
    with pool:
        wait_until(lambda: "lr" in pool.scorers and pool.scorers["lr"].wait_ready(0.1), 20,
                   "the scorer")  # fmt: skip
        first, second = (make_request(env.service, row) for row in onnx_models.x[:2])
        send(env.backplane, env.service, [first])
        # The first is scored alone unless the scorer waits for the second.
        wait_until(lambda: bool(observer.sizes) or wait_ms > 0, 10, "the first batch")
        send(env.backplane, env.service, [second])
        watcher.wait_scores({first.id, second.id}, 1, timeout=20)
    watcher.close()
    assert observer.sizes == batches


def test_a_score_goes_to_its_request_s_partition_whichever_partitioner_placed_it(
    memory_env: Env, onnx_models: Models, running: tuple[Scorer, Watcher]
) -> None:
    env = memory_env
    topics = ServiceTopics(env.service)
    placed = {}
    for i, row in enumerate(onnx_models.x[:8]):
        req = make_request(env.service, row)
        # Half where murmur2 puts the key (our clients), half in the other partition.
        by_key = partition_for(req.key or b"", 2)
        placed[req.id] = by_key if i % 2 else 1 - by_key
        env.backplane.produce(
            topics.requests, [OutRecord(req.encode(), req.key, partition=placed[req.id])]
        )
    reader = env.backplane.consumer([topics.scores], start="earliest")
    found: dict[str, int] = {}
    try:
        give_up = time.monotonic() + 20
        while len(found) < len(placed) and time.monotonic() < give_up:
            for record in reader.poll(500, 0.05):
                found[decode_score(record.value).request_id] = record.partition
    finally:
        reader.close()
    assert found == placed


def test_a_scorer_refuses_to_start_when_scores_has_another_partition_count(
    memory_env: Env, onnx_models: Models, caplog: pytest.LogCaptureFixture
) -> None:
    env = memory_env
    topics = ServiceTopics(env.service)
    env.backplane.create_topic(topics.requests, 4)
    env.backplane.create_topic(topics.scores, 2)
    scorer = Scorer(env.backplane, env.settings, env.service, "lr", config=CONFIG)
    with pytest.raises(ConfigurationError, match=r"recreate 'svc\.scores' with 4 partitions"):
        scorer.start()
    scorer.stop()
    # The scorer role says so in one line, and keeps following the registry.
    env.registry.publish(env.service, "lr", onnx_models.lr[0], format="onnx")
    env.registry.deploy(env.service, ModelRef("lr", 1))
    with (
        caplog.at_level(logging.ERROR, logger="modelstream.scoring.pool"),
        ScorerPool(env.backplane, env.settings, env.service, config=CONFIG) as pool,
    ):
        wait_until(lambda: "lane lr cannot start" in caplog.text, 10, "the lane's error")
        assert pool.scorers == {}
    [line] = [r for r in caplog.records if "cannot start" in r.getMessage()]
    assert "recreate 'svc.scores' with 4 partitions" in line.getMessage() and not line.exc_info


def test_a_scorer_first_on_a_new_backplane_creates_the_topics_with_the_deployment_s_count(
    memory_env: Env, onnx_models: Models
) -> None:
    env = memory_env
    env.registry.publish(env.service, "lr", onnx_models.lr[0], format="onnx")
    env.registry.deploy(env.service, ModelRef("lr", 1), partitions=3)
    with ScorerPool(env.backplane, env.settings, env.service, config=CONFIG) as pool:
        assert pool.wait_for({"lr"}, 30)
    counts = {s.name: s.partitions for s in env.backplane.list_topics()}
    topics = ServiceTopics(env.service)
    assert [counts[t] for t in (topics.requests, topics.scores, topics.results)] == [3, 3, 3]
    assert env.settings.default_partitions != 3
