"""A service with a feature set, end to end over real HTTP on SQLite.

The service spec names a feature-set YAML file; raw events go onto ``trucks.events``;
the champion is a real ONNX model whose one input is ``features`` (it echoes them).
A request for an entity must come back with that entity's features as of the
request's event time: the very values the offline builder computes by replaying the
same log (``features.offline``), and the values one computes by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord, now_ms
from modelstream.features import offline
from modelstream.features.role import store_path
from modelstream.features.spec import load_feature_set
from modelstream.gateway.serving import Serving
from modelstream.models.registry import Registry
from modelstream.models.spec import load_spec
from modelstream.settings import Settings
from modelstream.wire.topics import ServiceTopics
from tests.features.helpers import TRUCKS_SERVICE_YAML, echo_model

pytestmark = pytest.mark.integration

SERVICE = "trucks"
HOUR, MINUTE = 3_600_000, 60_000
FEATURES_YAML = f"""
name: trucks
version: 1
out_of_orderness_ms: 1000
allowed_lateness_ms: {10 * MINUTE}
features:
  - {{name: events, agg: count, window: {{hopping: [{HOUR}, {MINUTE}]}}}}
  - {{name: temp_mean, field: temp, agg: mean, window: {{hopping: [{HOUR}, {MINUTE}]}}}}
  - {{name: temp_max, field: temp, agg: max, window: {{hopping: [{HOUR}, {MINUTE}]}}}}
  - {{name: temp_last, field: temp, agg: last, window: {{hopping: [{HOUR}, {MINUTE}]}}}}
"""
# (entity, minutes before the test starts, temperature): all inside the hour-long window
# that ends at the minute before a request made within the next half hour.
EVENTS = [
    ("truck-1", 30, 70.0),
    ("truck-2", 25, 90.0),
    ("truck-1", 20, 74.0),
    ("truck-1", 5, 72.0),  # out of event-time order on purpose: still the latest below
    ("truck-2", 15, 95.0),
    ("truck-1", 10, 79.0),
]


@dataclass
class Running:
    client: httpx.Client
    backplane: Backplane
    settings: Settings
    start: int
    feature_file: Path


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    directory = tmp_path_factory.mktemp("features-e2e")
    feature_file = directory / "trucks-features.yaml"
    feature_file.write_text(FEATURES_YAML)
    (directory / "echo.onnx").write_bytes(echo_model(4))
    (directory / "trucks.yaml").write_text(TRUCKS_SERVICE_YAML)
    settings = Settings(backplane=f"sqlite://{directory / 'bp'}", default_partitions=2)
    backplane = open_backplane(settings.backplane, settings)
    start = now_ms()
    try:
        deployment = Registry(backplane, settings).apply(load_spec(directory / "trucks.yaml"))
        assert deployment.feature_set == str(feature_file.resolve())
        events = ServiceTopics(SERVICE).events
        backplane.create_topic(events, 2)
        backplane.produce(
            events,
            [
                OutRecord(orjson.dumps({"temp": temp}), entity.encode(), (), start - ago * MINUTE)
                for entity, ago, temp in EVENTS
            ],
        )
        serving = Serving(backplane, settings, [SERVICE], host="127.0.0.1", port=0)
        assert len(serving.featurizers) == 1
        serving.start(load_timeout=30)
        try:
            assert serving.server is not None
            with httpx.Client(base_url=serving.server.url, timeout=15) as client:
                yield Running(client, backplane, settings, start, feature_file)
        finally:
            serving.stop()
    finally:
        backplane.close()


def infer(running: Running, request_id: str, **parameters: Any) -> httpx.Response:
    body = {
        "id": request_id,
        "inputs": [{"name": "reading", "datatype": "FP32", "shape": [1, 1], "data": [0.0]}],
        "parameters": parameters,
    }
    return running.client.post(f"/v2/models/{SERVICE}/infer", json=body)


def offline_features(running: Running) -> dict[str, list[float]]:
    """Per request id, the features the offline builder computes over the same log."""
    feature_set = load_feature_set(running.feature_file)
    entries = offline.topic_entries(running.backplane, ServiceTopics(SERVICE).events)
    result = offline.build(feature_set, entries, flush=False)
    return {
        row["request_id"]: [row[name] for name in sorted(feature_set.names)]
        for row in result.request_rows
    }


def test_a_request_is_answered_from_its_entitys_features(running: Running) -> None:
    answers = {}
    for request_id, entity in (("r-1", "truck-1"), ("r-2", "truck-2")):
        response = infer(running, request_id, entity=entity)
        assert response.status_code == 200, response.text
        out = response.json()
        assert out["model_version"] == "echo@1"
        (echo,) = out["outputs"]
        assert echo["name"] == "echo" and echo["shape"] == [1, 4]
        answers[request_id] = echo["data"]

    # By hand, sorted by feature name as the model receives them: count (events), the
    # latest temperature in event time (temp_last), the max and the mean per truck.
    assert answers["r-1"] == pytest.approx([4, 72, 79, (70 + 74 + 72 + 79) / 4])
    assert answers["r-2"] == pytest.approx([2, 95, 95, (90 + 95) / 2])
    # The same values as the offline builder replaying the log, in float32 as served.
    expected = offline_features(running)
    for request_id, served in answers.items():
        assert served == np.float32(expected[request_id]).tolist()


def test_a_request_without_an_entity_is_refused(running: Running) -> None:
    response = infer(running, "no-entity")
    assert response.status_code == 400
    assert "parameters.entity" in response.json()["error"]


def test_the_featurizer_keeps_its_state_under_the_backplane_dir(running: Running) -> None:
    path = store_path(running.settings, SERVICE)
    assert path is not None and path.exists()
    assert path.is_relative_to(Path(running.settings.backplane.removeprefix("sqlite://")))
