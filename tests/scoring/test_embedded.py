"""The embedded scorer: tables in, the deployed version's answers out, swaps between calls."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from modelstream.archive.archiver import Archiver
from modelstream.archive.reader import ArchiveReader
from modelstream.backplane.records import OutRecord, now_ms
from modelstream.errors import InvalidRequest, NotReady, ScoringError
from modelstream.models.integrity import generate_keys
from modelstream.models.refs import ModelRef
from modelstream.monitoring.compare import compare
from modelstream.monitoring.monitor import Monitor
from modelstream.scoring.embedded import EmbeddedScorer
from modelstream.scoring.embedded_data import ScoredArrays, output_fields
from modelstream.testing.models import config
from modelstream.testing.sklearn import make_dataset
from modelstream.wire.labels import Label

from .conftest import Env, Models
from .harness import Watcher, force_deployment, wait_until

COLUMNS = ["f0", "f1", "f2", "f3"]


@pytest.fixture(params=["memory", pytest.param("sqlite", marks=pytest.mark.integration)])
def env(request: pytest.FixtureRequest) -> Env:
    return request.getfixturevalue(f"{request.param}_env")  # type: ignore[no-any-return]


@pytest.fixture
def scorer(env: Env, onnx_models: Models) -> Iterator[EmbeddedScorer]:
    """``lr@1`` deployed as champion, and an embedded scorer serving it."""
    env.registry.publish(env.service, "lr", onnx_models.lr[0], format="onnx")
    env.registry.deploy(env.service, ModelRef("lr", 1))
    with EmbeddedScorer(env.service, backplane=env.backplane, settings=env.settings) as s:
        assert s.wait_ready(30)
        yield s


def frame(x: np.ndarray, ids: bool = True) -> pd.DataFrame:
    df = pd.DataFrame(x, columns=COLUMNS)
    if ids:
        df.insert(0, "id", [f"row-{i}" for i in range(len(x))])
    return df


def test_every_kind_of_data_gets_the_answers_onnxruntime_gives(
    scorer: EmbeddedScorer, onnx_models: Models
) -> None:
    x = onnx_models.x
    want = onnx_models.expected(onnx_models.lr[0], x)

    out = scorer.score(frame(x))
    added = ["prediction", "probability_0", "probability_1", "model", "model_version"]
    assert list(out.columns) == ["id", *COLUMNS, *added]
    np.testing.assert_allclose(out[["probability_0", "probability_1"]].to_numpy(), want, atol=1e-6)
    assert (out["prediction"].to_numpy() == want.argmax(axis=1)).all()
    assert set(out["model_version"]) == {1} and set(out["model"]) == {"lr"}
    assert out["id"].tolist() == [f"row-{i}" for i in range(len(x))]

    table = pa.Table.from_pandas(frame(x), preserve_index=False)
    scored_table = scorer.score(table)
    assert isinstance(scored_table, pa.Table)
    np.testing.assert_allclose(
        scored_table.column("probability_1").to_numpy(), want[:, 1], atol=1e-6
    )
    batch = table.to_batches()[0]
    scored_batch = scorer.score(batch)
    assert isinstance(scored_batch, pa.RecordBatch) and scored_batch.num_rows == len(x)
    assert scored_batch.column("model_version").to_pylist() == [1] * len(x)

    arrays = scorer.score(x)
    assert isinstance(arrays, ScoredArrays) and arrays.ref == ModelRef("lr", 1)
    np.testing.assert_allclose(arrays.outputs["probabilities"], want, atol=1e-6)

    rows = [dict(zip(COLUMNS, map(float, r), strict=True)) for r in x[:5]]
    scored_rows = scorer.score(rows)
    assert [r["model_version"] for r in scored_rows] == [1] * 5
    assert [r["f0"] for r in scored_rows] == [r["f0"] for r in rows]
    np.testing.assert_allclose([r["probability_0"] for r in scored_rows], want[:5, 0], atol=1e-6)

    outputs, ref = scorer.score_arrays({"input": x})
    assert ref == ModelRef("lr", 1)
    np.testing.assert_allclose(outputs["probabilities"], want, atol=1e-6)

    stats = {s.ref: s for s in scorer.stats()}
    assert stats[ModelRef("lr", 1)].invocations == 5 * len(x) + 5
    assert stats[ModelRef("lr", 1)].errors == 0


def test_columns_pick_the_features_and_a_table_that_does_not_fit_is_refused(
    scorer: EmbeddedScorer, onnx_models: Models
) -> None:
    x = onnx_models.x[:8]
    df = frame(x).assign(extra=1.0, region="eu")
    want = onnx_models.expected(onnx_models.lr[0], x)
    out = scorer.score(df, columns=COLUMNS)
    np.testing.assert_allclose(out[["probability_0", "probability_1"]].to_numpy(), want, atol=1e-6)
    assert out["region"].tolist() == ["eu"] * 8
    with pytest.raises(InvalidRequest, match="4 features per row"):
        scorer.score(df.drop(columns=["region"]))
    with pytest.raises(InvalidRequest, match="no column"):
        scorer.score(df, columns=["f0", "f1", "f2", "nope"])
    with pytest.raises(TypeError, match="cannot score"):
        scorer.score("f0,f1")
    empty = scorer.score(frame(x[:0]))
    assert len(empty) == 0 and "model_version" in empty.columns


def test_a_new_deployment_is_picked_up_between_calls(
    env: Env, scorer: EmbeddedScorer, onnx_models: Models
) -> None:
    x = onnx_models.x
    assert set(scorer.score(frame(x))["model_version"]) == {1}
    env.registry.publish(env.service, "lr", onnx_models.lr[1], format="onnx")
    env.registry.deploy(env.service, ModelRef("lr", 2))
    wait_until(lambda: scorer.serving == ModelRef("lr", 2), 30, "lr@2 to serve")
    out = scorer.score(frame(x))
    assert set(out["model_version"]) == {2}
    want = onnx_models.expected(onnx_models.lr[1], x)
    np.testing.assert_allclose(out[["probability_0", "probability_1"]].to_numpy(), want, atol=1e-6)
    assert scorer.swaps == 2 and not scorer.failures
    assert [str(s.ref) for s in scorer.stats()] == ["lr@1", "lr@2"]

    # A promotion of another model to champion is followed too.
    env.registry.publish(env.service, "tree", onnx_models.tree, format="onnx")
    env.registry.deploy(env.service, ModelRef("tree", 1))
    wait_until(lambda: scorer.serving == ModelRef("tree", 1), 30, "tree@1 to serve")
    assert set(scorer.score(frame(x))["model"]) == {"tree"}


def test_a_tampered_model_is_refused_and_the_old_one_keeps_serving(
    env: Env, scorer: EmbeddedScorer, onnx_models: Models
) -> None:
    watcher = Watcher(env.backplane, env.service)
    try:
        good = env.registry.descriptor(env.service, ModelRef("lr", 1))
        tampered = dataclasses.replace(good, version=2, sha256="0" * 64)
        env.registry.write_descriptor(tampered)
        current = env.registry.deployment(env.service)
        bad = dataclasses.replace(
            current,
            models=(dataclasses.replace(current.models[0], ref=ModelRef("lr", 2)),),
            revision=current.revision + 1,
        )
        force_deployment(env.backplane, bad)
        wait_until(lambda: bool(scorer.failures), 30, "lr@2 to be refused")
        failure = scorer.failures[0]
        assert failure.ref == ModelRef("lr", 2) and failure.error_type == "IntegrityError"
        assert scorer.serving == ModelRef("lr", 1)
        out = scorer.score(frame(onnx_models.x))
        assert set(out["model_version"]) == {1}
        event = watcher.wait_event("load_failed", 2, timeout=20)
        assert event.serving == 1 and event.scorer == scorer.id
    finally:
        watcher.close()


def test_where_signatures_are_required_unsigned_and_badly_signed_versions_are_refused(
    env: Env, onnx_models: Models, tmp_path: Path
) -> None:
    trusted, stranger = generate_keys(tmp_path / "trusted"), generate_keys(tmp_path / "other")
    signed = env.registry.publish(
        env.service, "lr", onnx_models.lr[0], format="onnx", sign_key=trusted.private_path
    )
    env.registry.deploy(
        env.service,
        signed.ref,
        require_signature=True,
        trusted_keys={trusted.key_id: trusted.public_key},
    )
    unsigned = env.registry.publish(env.service, "lr", onnx_models.lr[1], format="onnx")
    by_stranger = env.registry.publish(
        env.service, "lr", onnx_models.lr[2], format="onnx", sign_key=stranger.private_path
    )
    altered = dataclasses.replace(signed, version=4)  # the signature covers the version
    env.registry.write_descriptor(altered)
    bad = [(unsigned, "is unsigned"), (by_stranger, "does not trust"), (altered, "not verify")]
    with EmbeddedScorer(env.service, backplane=env.backplane, settings=env.settings) as scorer:
        assert scorer.wait_ready(30) and scorer.serving == signed.ref
        for n, (descriptor, why) in enumerate(bad, start=1):
            current = env.registry.deployment(env.service)
            live = dataclasses.replace(current.models[0], ref=descriptor.ref)
            force_deployment(
                env.backplane,
                dataclasses.replace(current, models=(live,), revision=current.revision + 1),
            )
            wait_until(lambda n=n: len(scorer.failures) == n, 30, f"{descriptor.ref} refused")
            failure = scorer.failures[-1]
            assert failure.ref == descriptor.ref and failure.error_type == "SignatureError"
            assert why in failure.error
            assert scorer.serving == signed.ref
            assert set(scorer.score(frame(onnx_models.x))["model_version"]) == {1}


def test_written_scores_are_score_records_on_the_scores_topic(
    env: Env, onnx_models: Models
) -> None:
    env.registry.publish(env.service, "lr", onnx_models.lr[0], format="onnx")
    env.registry.deploy(env.service, ModelRef("lr", 1))
    x = onnx_models.x[:10]
    want = onnx_models.expected(onnx_models.lr[0], x)
    watcher = Watcher(env.backplane, env.service)
    try:
        with EmbeddedScorer(
            env.service, backplane=env.backplane, settings=env.settings, write_scores=True
        ) as scorer:
            assert scorer.wait_ready(30)
            scorer.score(frame(x))  # ids from the id column
            scorer.score(x)  # generated ids
        watcher.drain()
    finally:
        watcher.close()
    assert len(watcher.scores) == 20
    by_id = {s.request_id: s for s in watcher.scores}
    assert len(by_id) == 20
    for i in range(10):
        s = by_id[f"row-{i}"]
        assert s.ok and s.ref == "lr@1" and s.role == "champion" and s.batch_size == 10
        assert s.outputs is not None
        proba = next(t for t in s.outputs if t.name == "probabilities")
        assert proba.shape == (1, 2)
        np.testing.assert_allclose(proba.data, want[i], atol=1e-6)
    generated = [s for s in watcher.scores if not s.request_id.startswith("row-")]
    assert len(generated) == 10 and all(s.request_id.startswith(scorer.id) for s in generated)


def test_written_scores_reach_the_monitor_and_compare(
    env: Env, onnx_models: Models, tmp_path: Path
) -> None:
    """Champion and challenger each scored in-process, labels by row id, the real archiver:
    ``compare`` pairs them and the monitor measures both, with no request ever written."""
    champion, challenger = ModelRef("lr", 1), ModelRef("tree", 1)
    env.registry.publish(env.service, "lr", onnx_models.lr[0], format="onnx")
    env.registry.publish(env.service, "tree", onnx_models.tree, format="onnx")
    env.registry.deploy(env.service, champion, challengers=[challenger])
    data = make_dataset(300, 4)  # the rows onnx_models.x was cut from, with their classes
    x, y = data.x[:64], data.y[:64]
    ids = [f"txn-{i}" for i in range(len(x))]
    df = frame(x).assign(id=ids)
    scorers = [
        EmbeddedScorer(
            env.service,
            backplane=env.backplane,
            settings=env.settings,
            write_scores=True,
            model=name,
        )
        for name in ("lr", "tree")
    ]
    try:
        for scorer in scorers:
            assert scorer.wait_ready(30)
            scorer.score(df)
    finally:
        for scorer in scorers:
            scorer.close()
    labels = [
        Label(env.service, int(label), now_ms(), request_id=i)
        for i, label in zip(ids, y, strict=True)
    ]
    env.backplane.create_topic(f"{env.service}.labels")
    env.backplane.produce(
        f"{env.service}.labels", [OutRecord(lb.encode(), lb.key) for lb in labels]
    )
    archiver = Archiver(env.backplane, env.service, tmp_path / "archive", flush_rows=100_000)
    try:
        while archiver.step(timeout=0.2, max_records=5000):
            pass
    finally:
        archiver.close()

    reader = ArchiveReader(tmp_path / "archive")
    assert reader.requests(env.service).empty  # nothing but scores and labels
    joined = reader.joined(env.service, models=[champion, challenger])
    assert sorted(joined["request_id"]) == sorted(ids)
    assert joined["event_time"].isna().all()
    result = compare(joined, champion, challenger)
    assert result.n_paired == len(x)
    assert (result.a.ref, result.b.ref) == (champion, challenger)
    assert result.a.scored == result.b.scored == len(x)
    truth = onnx_models.expected(onnx_models.lr[0], x).argmax(axis=1) == y
    assert result.a.primary.name == "accuracy"
    assert result.a.primary.value == pytest.approx(truth.mean())

    monitor = Monitor(env.backplane, env.settings, env.service, standalone=True)
    monitor.open()
    try:
        assert monitor.catch_up(timeout=30)
        snapshot = monitor.snapshot()
    finally:
        monitor.stop()
    for ref in (champion, challenger):
        model = snapshot.model(str(ref))
        assert model is not None, f"the monitor does not list {ref}"
        assert model.labelled == model.scored == len(x)
    lr = snapshot.model(str(champion))
    assert lr is not None and lr.quality["accuracy"] == pytest.approx(truth.mean())


def test_not_ready_before_a_deployment_and_after_close(env: Env, onnx_models: Models) -> None:
    scorer = EmbeddedScorer(env.service, backplane=env.backplane, settings=env.settings)
    try:
        assert not scorer.wait_ready(0.3)
        with pytest.raises(NotReady, match="no version of the champion"):
            scorer.score(onnx_models.x)
        env.registry.publish(env.service, "lr", onnx_models.lr[0], format="onnx")
        env.registry.deploy(env.service, ModelRef("lr", 1))
        assert scorer.wait_ready(30)
    finally:
        scorer.close()
    scorer.close()
    with pytest.raises(NotReady, match="closed"):
        scorer.score(onnx_models.x)


def test_a_model_that_raises_fails_the_call_and_is_counted(env: Env, onnx_models: Models) -> None:
    ref = env.registry.publish(
        env.service,
        "broken",
        config(ok_batches=1),  # the warm-up passes
        format="python",
        entrypoint="modelstream.testing.models:FailingModel",
    ).ref
    env.registry.deploy(env.service, ref, allow_python=True)
    watcher = Watcher(env.backplane, env.service)
    try:
        with EmbeddedScorer(
            env.service,
            backplane=env.backplane,
            settings=env.settings,
            model="broken",
            write_scores=True,
        ) as scorer:
            assert scorer.wait_ready(30)
            with pytest.raises(ScoringError, match="RuntimeError"):
                scorer.score(frame(onnx_models.x[:3]))
            (stats,) = scorer.stats()
            assert stats.errors == stats.invocations == 3
        watcher.drain()
    finally:
        watcher.close()
    # The monitor counts the failure too: one error score per row, with no outputs.
    assert sorted(s.request_id for s in watcher.scores) == ["row-0", "row-1", "row-2"]
    for score in watcher.scores:
        assert not score.ok and score.outputs is None and score.ref == "broken@1"
        assert "RuntimeError" in (score.error or "")


def test_a_model_over_its_timeout_fails_the_call_without_waiting_for_it(
    env: Env, onnx_models: Models
) -> None:
    ref = env.registry.publish(
        env.service,
        "slow",
        config(delay_ms=1500),  # its warm-up takes 1.5 s too
        format="python",
        entrypoint="modelstream.testing.models:SlowModel",
    ).ref
    env.registry.deploy(env.service, ref, allow_python=True)
    with EmbeddedScorer(
        env.service, backplane=env.backplane, settings=env.settings, timeout_s=0.2
    ) as scorer:
        assert scorer.wait_ready(30)
        # The timeout's error, not the model's answer 1.5 s later: the call did not wait.
        with pytest.raises(ScoringError, match=r"within its timeout of 200 ?ms"):
            scorer.score(onnx_models.x[:4])
        (stats,) = scorer.stats()
        assert stats.ref == ref and stats.errors == stats.invocations == 4


def test_output_fields_name_the_scored_columns(env: Env, onnx_models: Models) -> None:
    d = env.registry.publish(env.service, "lr", onnx_models.lr[0], format="onnx")
    assert output_fields(d.schema) == [
        ("prediction", "INT64"),
        ("probability_0", "FP32"),
        ("probability_1", "FP32"),
        ("model", "BYTES"),
        ("model_version", "INT64"),
    ]
