"""Bad versions never replace a good one; bad models cost error scores, not the scorer."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from modelstream.errors import BackplaneUnavailable
from modelstream.models.descriptor import ModelDescriptor
from modelstream.models.integrity import generate_keys, sha256_hex
from modelstream.models.refs import ModelRef
from modelstream.models.schema import ModelSchema, TensorSpec
from modelstream.scoring import scorer as scorer_module
from modelstream.scoring.config import ScorerConfig
from modelstream.scoring.scorer import Scorer
from modelstream.testing.models import config

from .conftest import Env, Models
from .harness import Watcher, force_deployment, make_request, send

pytestmark = pytest.mark.integration

CONFIG = ScorerConfig(max_batch=32, max_wait_ms=1.0, timeout_ms=300, poll_timeout_s=0.05)


@pytest.fixture
def serving(sqlite_env: Env, onnx_models: Models) -> Iterator[tuple[Scorer, Watcher]]:
    """A scorer of ``lr`` serving ``lr@1`` (ONNX) on SQLite, and a watcher."""
    env = sqlite_env
    env.registry.publish(env.service, "lr", onnx_models.lr[0], format="onnx")
    env.registry.deploy(env.service, ModelRef("lr", 1))
    watcher = Watcher(env.backplane, env.service)
    scorer = Scorer(env.backplane, env.settings, env.service, "lr", config=CONFIG).start()
    try:
        assert scorer.wait_ready(30)
        yield scorer, watcher
    finally:
        scorer.stop()
        watcher.close()


def score_some(env: Env, watcher: Watcher, x: np.ndarray, n: int = 5, timeout: float = 20) -> list:
    reqs = [make_request(env.service, x[i]) for i in range(n)]
    send(env.backplane, env.service, reqs)
    got = watcher.wait_scores({r.id for r in reqs}, 1, timeout)
    return [s for r in reqs for s in got[r.id]]


def corrupt_bytes(env: Env, d: ModelDescriptor, keys: object) -> ModelDescriptor:
    junk = b"this is not an onnx model" * 10
    return dataclasses.replace(d, version=2, data=junk, sha256=sha256_hex(junk), size=len(junk))


def wrong_digest(env: Env, d: ModelDescriptor, keys: object) -> ModelDescriptor:
    return dataclasses.replace(d, version=2, sha256="0" * 64)


def schema_mismatch(env: Env, d: ModelDescriptor, keys: object) -> ModelDescriptor:
    wider = ModelSchema((TensorSpec("input", "FP32", (-1, 7)),), d.schema.outputs)
    return dataclasses.replace(d, version=2, schema=wider)


def unsigned_where_required(env: Env, d: ModelDescriptor, keys: object) -> ModelDescriptor:
    return dataclasses.replace(d, version=2)  # not signed; the deployment will require it


CASES: dict[str, tuple[Callable[[Env, ModelDescriptor, object], ModelDescriptor], str]] = {
    "corrupt bytes": (corrupt_bytes, "ModelLoadError"),
    "wrong digest": (wrong_digest, "IntegrityError"),
    "schema mismatch": (schema_mismatch, "SchemaMismatch"),
    "unsigned where required": (unsigned_where_required, "SignatureError"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_version_is_refused_and_the_old_one_keeps_serving(
    case: str, sqlite_env: Env, onnx_models: Models, serving: tuple[Scorer, Watcher], tmp_path
) -> None:
    env, (scorer, watcher) = sqlite_env, serving
    make, error_type = CASES[case]
    good = env.registry.descriptor(env.service, ModelRef("lr", 1))
    env.registry.write_descriptor(make(env, good, None))
    current = env.registry.deployment(env.service)
    bad = dataclasses.replace(
        current, models=(dataclasses.replace(current.models[0], ref=ModelRef("lr", 2)),)
    )
    if case == "unsigned where required":
        kp = generate_keys(tmp_path / "keys")
        bad = dataclasses.replace(
            bad, require_signature=True, trusted_keys={kp.key_id: kp.public_key}
        )
    force_deployment(env.backplane, dataclasses.replace(bad, revision=current.revision + 1))

    event = watcher.wait_event("load_failed", 2, timeout=20)
    assert event.error_type == error_type, event
    assert event.serving == 1 and event.error
    assert scorer.serving == ModelRef("lr", 1)
    scores = score_some(env, watcher, onnx_models.x)
    assert all(s.ok and s.version == 1 for s in scores)
    assert scorer.alive


def publish_python(env: Env, name: str, entry: str, **kwargs: object) -> ModelRef:
    d = env.registry.publish(
        env.service,
        name,
        config(**kwargs),
        format="python",
        entrypoint=f"modelstream.testing.models:{entry}",
    )
    return d.ref


def test_a_model_that_raises_gives_error_scores_and_the_scorer_goes_on(
    sqlite_env: Env, onnx_models: Models, serving: tuple[Scorer, Watcher]
) -> None:
    env, (scorer, watcher) = sqlite_env, serving
    ref = publish_python(env, "lr", "FailingModel", ok_batches=1)  # the warm-up passes
    env.registry.deploy(env.service, ref, allow_python=True)
    watcher.wait_event("swapped", ref.version, timeout=20)
    scores = score_some(env, watcher, onnx_models.x)
    assert scores and all(not s.ok and s.version == ref.version for s in scores)
    assert all("RuntimeError" in (s.error or "") for s in scores)
    # Still alive: a good version swaps in and answers.
    good = env.registry.publish(env.service, "lr", onnx_models.lr[1], format="onnx").ref
    env.registry.deploy(env.service, good)
    watcher.wait_event("swapped", good.version, timeout=20)
    assert all(s.ok and s.version == good.version for s in score_some(env, watcher, onnx_models.x))
    stats = {s.ref: s for s in scorer.stats()}
    assert stats[ref].errors == stats[ref].invocations == 5


def test_a_model_that_hangs_gets_an_error_score_within_the_timeout(
    sqlite_env: Env, onnx_models: Models, serving: tuple[Scorer, Watcher]
) -> None:
    env, (scorer, watcher) = sqlite_env, serving
    ref = publish_python(env, "lr", "SlowModel", delay_ms=1500)  # its warm-up takes 1.5 s
    env.registry.deploy(env.service, ref, allow_python=True)
    watcher.wait_event("swapped", ref.version, timeout=20)
    for _ in range(2):  # the second proves the scorer did not wait for the first call
        started = time.monotonic()
        (score,) = score_some(env, watcher, onnx_models.x, n=1, timeout=10)
        assert not score.ok and "timeout of 300 ms" in (score.error or "")
        assert 300 <= score.latency_ms < 1000
        assert time.monotonic() - started < 1.4  # well below the model's 1.5 s
    assert scorer.alive


def test_an_error_event_names_a_deployed_version_without_descriptor(
    sqlite_env: Env, serving: tuple[Scorer, Watcher]
) -> None:
    env, (scorer, watcher) = sqlite_env, serving
    current = env.registry.deployment(env.service)
    missing = dataclasses.replace(
        current,
        models=(dataclasses.replace(current.models[0], ref=ModelRef("lr", 9)),),
        revision=current.revision + 1,
    )
    force_deployment(env.backplane, missing)
    event = watcher.wait_event("waiting", 9, timeout=20)
    assert event.error_type == "ModelNotFound" and scorer.serving == ModelRef("lr", 1)


def test_a_backplane_failure_is_a_one_line_warning_and_scoring_resumes(
    sqlite_env: Env,
    onnx_models: Models,
    serving: tuple[Scorer, Watcher],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broker away is expected in operation: the operator reads what failed in one line,
    not a traceback, and the scorer goes on from its committed offsets."""
    env, (scorer, watcher) = sqlite_env, serving
    real, failed = scorer_module.collect, threading.Event()

    def collect_failing_once(*args: Any, **kwargs: Any) -> Any:
        if not failed.is_set():
            failed.set()
            raise BackplaneUnavailable("the broker is down; check that it runs")
        return real(*args, **kwargs)

    with caplog.at_level(logging.WARNING, logger="modelstream.scoring.scorer"):
        monkeypatch.setattr(scorer_module, "collect", collect_failing_once)
        assert failed.wait(10)
        assert all(s.ok for s in score_some(env, watcher, onnx_models.x))
    assert scorer.loop_errors == 1
    (record,) = [r for r in caplog.records if r.name == "modelstream.scoring.scorer"]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "the broker is down" in record.getMessage()


def test_a_backplane_that_stays_down_is_retried_with_a_growing_wait_reset_by_a_success(
    sqlite_env: Env,
    onnx_models: Models,
    serving: tuple[Scorer, Watcher],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broker down for a while is not hammered (nor the log flooded): the waits double;
    once scoring works again, the next failure waits the first wait again."""
    env, (scorer, watcher) = sqlite_env, serving
    real, failures = scorer_module.collect, [0]

    def collect_while_down(*args: Any, **kwargs: Any) -> Any:
        if failures[0] < 4:
            failures[0] += 1
            raise BackplaneUnavailable("the broker is down; check that it runs")
        return real(*args, **kwargs)

    with caplog.at_level(logging.WARNING, logger="modelstream.scoring.scorer"):
        monkeypatch.setattr(scorer_module, "collect", collect_while_down)
        assert all(s.ok for s in score_some(env, watcher, onnx_models.x))  # after 4 failures
        failures[0] = 3  # one more failure, after the successes
        assert all(s.ok for s in score_some(env, watcher, onnx_models.x))
    waits = [
        r.getMessage().split(" in ")[1].split(":")[0]
        for r in caplog.records
        if r.name == "modelstream.scoring.scorer"
    ]
    assert waits == ["0.2 s", "0.4 s", "0.8 s", "1.6 s", "0.2 s"]
    assert scorer.loop_errors == 5
