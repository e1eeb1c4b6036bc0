"""Proof over the real path: HTTP -> gateway -> requests topic -> real scorers of real
models -> rendezvous -> the answer, on SQLite and on Kafka, in one ``Serving`` process.

Three services share the hanging model (``SlowModel``, slower than any deadline here)
and the crashing one (``FailingModel``, raises on every request):

* ``mixed``: the ONNX classifier ``lr`` (champion) and the rule ``rule`` answer too, so
  every request gets a model's answer; each policy is switched in over the registry;
* ``hang``: only the hanging and the crashing model, no fallback: a 504 at the deadline;
* ``hangfb``: the same with a fallback output: a 200 marked ``fallback`` at the deadline.

Whatever the models do, every HTTP response must arrive by the deadline plus a margin
(generous: CI machines are loaded), and ``results`` must hold exactly one decision per
request. Nothing else here asserts speed.

The backplane's record limit is set to Kafka's default (1,000,000 bytes) on both engines:
a request above it is refused with 413, and an answer above it becomes an error answer
that says so. Neither stalls the service: the next request is answered.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.gateway.serving import Serving
from modelstream.models.deployment import Fallback, Policy, PolicyKind
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.rendezvous.outcome import LATE_HEADER
from modelstream.settings import Settings
from modelstream.testing.models import config
from modelstream.testing.sklearn import onnx_classifier
from modelstream.wire.results import decode_result
from modelstream.wire.topics import ServiceTopics
from tests.rendezvous.factories import read_all

pytestmark = pytest.mark.integration

DEADLINE_MS = 250  # of hang and hangfb
# How long past the deadline the gateway waits for the rendezvous' answer. Its default,
# 100 ms, is for a machine that serves; in a test process that has run most of the suite
# before this module, a stall can outlast it (such as a collection of a large heap), and
# the gateway's own 504 would then stand in for the rendezvous' answer that this module
# checks.
GRACE_MS = 400
MARGIN_S = 0.500  # response time allowed beyond the deadline (a loaded CI machine)
HANG_MS = 1200  # SlowModel: longer than every deadline (and it warms up once at load)
MODELS = "modelstream.testing.models"
FALLBACK = Fallback(({"name": "label", "datatype": "INT64", "shape": [1], "data": [0]},))
R = ModelRef.parse
LIMIT = 1_000_000  # Kafka's default message.max.bytes, on both engines


@dataclass
class Running:
    client: httpx.Client
    registry: Registry
    backplane: Backplane
    x: npt.NDArray[np.float32]


def publish_doubles(registry: Registry, service: str) -> None:
    registry.publish(
        service, "slow", config(delay_ms=HANG_MS), format="python", entrypoint=f"{MODELS}:SlowModel"
    )
    # ok_batches=1: its warm-up at load passes, every request after it fails.
    crash = config(ok_batches=1, message="crashed (test double)")
    registry.publish(service, "crash", crash, format="python", entrypoint=f"{MODELS}:FailingModel")


@pytest.fixture(scope="module", params=["sqlite", "kafka"])
def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    if request.param == "kafka":
        url = f"kafka://{request.getfixturevalue('kafka_broker')}"
    else:
        url = f"sqlite://{tmp_path_factory.mktemp('deadlines')}"
    # session_timeout_ms: a group join on the test broker takes half of it (DESIGN.md).
    settings = Settings(
        backplane=url,
        default_partitions=2,
        max_record_bytes=LIMIT,
        session_timeout_ms=3000,
        gateway_grace_ms=GRACE_MS,
    )
    backplane = open_backplane(settings.backplane, settings)
    registry = Registry(backplane, settings)
    lr, data = onnx_classifier("logreg", seed=0, rows=300)
    for service in ("mixed", "hang", "hangfb"):
        publish_doubles(registry, service)
    registry.publish("mixed", "lr", lr, format="onnx")
    rule = config(threshold=0.0)
    registry.publish("mixed", "rule", rule, format="python", entrypoint=f"{MODELS}:ThresholdModel")
    doubles = [R("slow@1"), R("crash@1")]
    registry.deploy(
        "mixed", R("lr@1"), [R("rule@1"), *doubles], deadline_ms=1000, allow_python=True
    )
    registry.deploy("hang", R("slow@1"), [R("crash@1")], deadline_ms=DEADLINE_MS, allow_python=True)
    registry.deploy(
        "hangfb",
        R("slow@1"),
        [R("crash@1")],
        deadline_ms=DEADLINE_MS,
        allow_python=True,
        fallback=FALLBACK,
    )
    serving = Serving(
        backplane,
        settings,
        ["mixed", "hang", "hangfb"],
        host="127.0.0.1",
        port=0,
        monitor=False,
        archiver=False,
        trainer=False,
    )
    try:
        serving.start(load_timeout=30)
        assert serving.server is not None
        with httpx.Client(base_url=serving.server.url, timeout=10) as client:
            yield Running(client, registry, backplane, data.x)
    finally:
        serving.stop()
        backplane.close()


def body(rows: Any, request_id: str) -> dict[str, Any]:
    rows = np.asarray(rows, dtype=np.float32).reshape(-1, 4)
    tensor = {"name": "input", "datatype": "FP32", "shape": list(rows.shape)}
    return {"id": request_id, "inputs": [{**tensor, "data": rows.ravel().tolist()}]}


def timed_burst(running: Running, service: str, n: int) -> list[tuple[str, httpx.Response, float]]:
    """``n`` concurrent requests to ``service``: (id, response, seconds it took) each."""

    def one(i: int) -> tuple[str, httpx.Response, float]:
        request_id = f"{service}-{i}"
        started = time.perf_counter()
        response = running.client.post(
            f"/v2/models/{service}/infer", json=body(running.x[i], request_id)
        )
        return request_id, response, time.perf_counter() - started

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


def decisions(running: Running, service: str, expect: int) -> Counter[str]:
    """How many decision records (late ones excluded) each request id has on results."""
    records = read_all(running.backplane, ServiceTopics(service).results, expect=expect, settle=0.3)
    return Counter(
        decode_result(r.value).request_id for r in records if r.header(LATE_HEADER) is None
    )


def test_a_hanging_and_a_crashing_model_get_a_504_by_the_deadline(running: Running) -> None:
    burst = timed_burst(running, "hang", 8)
    for request_id, response, took in burst:
        assert response.status_code == 504, (request_id, response.text)
        assert "deadline missed" in response.json()["error"]
        assert took <= DEADLINE_MS / 1000 + MARGIN_S, (request_id, took)
    assert decisions(running, "hang", 8) == Counter({rid: 1 for rid, _, _ in burst})


def test_with_a_fallback_output_they_get_it_by_the_deadline(running: Running) -> None:
    burst = timed_burst(running, "hangfb", 8)
    for request_id, response, took in burst:
        assert response.status_code == 200, (request_id, response.text)
        out = response.json()
        assert out["parameters"]["fallback"] is True
        assert out["parameters"]["deadline_met"] is False
        assert out["outputs"][0]["data"] == [0]
        assert took <= DEADLINE_MS / 1000 + MARGIN_S, (request_id, took)
    assert decisions(running, "hangfb", 8) == Counter({rid: 1 for rid, _, _ in burst})


def test_a_working_model_beside_them_answers_every_request(running: Running) -> None:
    burst = timed_burst(running, "mixed", 8)
    for request_id, response, took in burst:
        assert response.status_code == 200, (request_id, response.text)
        out = response.json()
        assert out["model_version"] == "lr@1" and out["parameters"]["policy"] == "preference"
        assert out["parameters"]["deadline_met"] is True
        assert took <= 1.0 + MARGIN_S, (request_id, took)
    assert decisions(running, "mixed", 8) == Counter({rid: 1 for rid, _, _ in burst})
    # Serving's scorers report to the gateway's /metrics, the failing ones included.
    families = text_string_to_metric_families(running.client.get("/metrics").text)
    batches = {
        sample.labels["model"]: sample.value
        for family in families
        for sample in family.samples
        if sample.name == "modelstream_scorer_batch_size_count"
        and sample.labels["service"] == "mixed"
    }
    assert batches.get("lr", 0) > 0 and batches.get("crash", 0) > 0, batches


def answer_under(running: Running, policy: Policy, row: Any, request_id: str) -> dict[str, Any]:
    """Switch ``mixed`` to ``policy`` and return the first answer decided under it (the
    rendezvous reads the deployment topic, so the switch takes a moment)."""
    running.registry.set_policy("mixed", policy)
    give_up = time.monotonic() + 10
    for attempt in range(1000):
        response = running.client.post(
            "/v2/models/mixed/infer", json=body(row, f"{request_id}-{attempt}")
        )
        assert response.status_code == 200, response.text
        out: dict[str, Any] = response.json()
        if out["parameters"]["policy"] == policy.kind.value or time.monotonic() > give_up:
            return out
        time.sleep(0.05)
    raise AssertionError("unreachable")


def test_each_policy_answers_over_http(running: Running) -> None:
    lr_labels = running.client.post("/v2/models/mixed/infer", json=body(running.x[:50], "lr-all"))
    labels = {o["name"]: o["data"] for o in lr_labels.json()["outputs"]}["label"]
    rule_labels = (running.x[:50, 0] > 0).astype(int).tolist()
    agree = next(i for i in range(50) if labels[i] == rule_labels[i])

    first = answer_under(running, Policy(PolicyKind.FIRST), running.x[agree], "first")
    assert first["parameters"]["policy"] == "first"
    assert first["model_version"] in {"lr@1", "rule@1"}  # never the crashing or hanging one

    # Two of the four must agree: lr and the rule do on this row; the crash never votes.
    vote = Policy(PolicyKind.CONSENSUS, min_answers=2, combine="vote")
    voted = answer_under(running, vote, running.x[agree], "vote")
    assert voted["parameters"]["policy"] == "consensus"
    assert voted["parameters"]["deadline_met"] is True
    assert {o["name"]: o["data"] for o in voted["outputs"]}["label"] == [labels[agree]]

    # No monitor in this process measures quality: it answers as preference would.
    quality = answer_under(running, Policy(PolicyKind.QUALITY), running.x[agree], "quality")
    assert quality["parameters"]["policy"] == "quality"
    assert quality["model_version"] == "lr@1"


def test_a_request_above_the_record_limit_is_refused_and_the_next_answered(
    running: Running,
) -> None:
    big = body(np.ones((80_000, 4)), "too-big")  # about 1.3 MB once encoded
    response = running.client.post("/v2/models/mixed/infer", json=big)
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert "larger than the backplane accepts (1000000 bytes)" in error, error
    assert "MODELSTREAM_MAX_RECORD_BYTES" in error
    after = running.client.post("/v2/models/mixed/infer", json=body(running.x[0], "after-big"))
    assert after.status_code == 200, after.text


def test_an_answer_above_the_record_limit_is_an_error_and_the_next_is_answered(
    running: Running,
) -> None:
    # 40,000 rows fit in a request (about 0.7 MB) but not their outputs: a label and two
    # probabilities per row from lr, about 1.7 MB encoded.
    rows = np.ones((40_000, 4))
    response = running.client.post("/v2/models/mixed/infer", json=body(rows, "big-answer"))
    assert response.status_code == 504, response.text
    error = response.json()["error"]
    assert "above the backplane's record limit of 1000000" in error, error
    after = running.client.post("/v2/models/mixed/infer", json=body(running.x[1], "after-answer"))
    assert after.status_code == 200, after.text
    assert decisions(running, "mixed", 1)["big-answer"] == 1
