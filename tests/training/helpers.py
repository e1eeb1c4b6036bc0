"""A real service for trainer tests: a SQLite backplane, a deployed ONNX champion, real
request/score/label records, and the real Archiver writing them to Parquet."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modelstream.archive.archiver import Archiver
from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord
from modelstream.models.deployment import Deployment
from modelstream.models.formats import load_verified
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.models.store import fetch_bytes
from modelstream.settings import Settings
from modelstream.testing.sklearn import to_onnx
from modelstream.wire.labels import Label
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.scores import Score
from modelstream.wire.tensors import array_to_tensor

SERVICE = "fraud"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
STEP = 60_000
FEATURES = 4


WEIGHTS = (1.5, -2.0, 1.0, 0.5)
DRIFTED = (1.0, -2.0, 1.5, 1.0)


def concept(
    rows: int, seed: int, weights: tuple[float, ...] = WEIGHTS
) -> tuple[npt.NDArray[np.float32], Any]:
    """A linear concept over 4 features (other ``weights``: a concept change)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES)).astype(np.float32)
    w = np.asarray(weights)
    y = ((x @ w + rng.normal(0, 0.5, rows)) > 0).astype(np.int64)
    return x, y


@dataclass
class World:
    backplane: Backplane
    settings: Settings
    registry: Registry
    champion: ModelRef

    def close(self) -> None:
        self.backplane.close()


def world(tmp_path: Path, champion_seed: int = 0) -> World:
    """A SQLite backplane with a champion ``lr@1`` (logreg on the concept) deployed."""
    from sklearn.linear_model import LogisticRegression

    settings = Settings(backplane=f"sqlite://{tmp_path / 'state'}")
    bp = open_backplane(settings.backplane, settings)
    registry = Registry(bp, settings)
    x, y = concept(2000, champion_seed)
    model = LogisticRegression(max_iter=500).fit(x, y)
    registry.publish(SERVICE, "lr", to_onnx(model, FEATURES), format="onnx")
    registry.deploy(SERVICE, ModelRef("lr", 1))
    return World(bp, settings, registry, ModelRef("lr", 1))


def traffic(w: World, x: npt.NDArray[np.float32], y: Any, *, first: int = 0) -> None:
    """Requests for the rows of ``x``, the champion's real scores, and labels ``y``."""
    deployment: Deployment = w.registry.deployment(SERVICE)
    descriptor = w.registry.descriptor(SERVICE, w.champion)
    model = load_verified(descriptor, fetch_bytes(descriptor), deployment)
    outputs = model.predict({"input": x})
    model.close()
    requests, scores, labels = [], [], []
    for i in range(len(x)):
        n = first + i
        rid, at = f"r{n}", T0 + n * STEP
        tensor = array_to_tensor("input", x[i : i + 1])
        requests.append(InferenceRequest(rid, SERVICE, at, at + 100, (tensor,), sent_at=at))
        out = (
            array_to_tensor("label", outputs["label"][i : i + 1]),
            array_to_tensor("probabilities", outputs["probabilities"][i : i + 1]),
        )
        scores.append(Score(rid, "lr", 1, out, None, 0.2, at + 5))
        labels.append(Label(SERVICE, int(y[i]), at + 60_000, request_id=rid))
    bp = w.backplane
    for kind in ("requests", "scores", "results", "labels"):
        bp.create_topic(f"{SERVICE}.{kind}")
    bp.produce(
        f"{SERVICE}.requests", [OutRecord(r.encode(), r.key, (), r.event_time) for r in requests]
    )
    bp.produce(f"{SERVICE}.scores", [OutRecord(s.encode(), s.request_id.encode()) for s in scores])
    bp.produce(f"{SERVICE}.labels", [OutRecord(lb.encode(), lb.key) for lb in labels])


def archive(w: World) -> None:
    """Run the real archiver until it has written everything on the topics."""
    archiver = Archiver(w.backplane, SERVICE, w.settings.archive_root(), flush_rows=100_000)
    try:
        while archiver.step(timeout=0.2, max_records=5000):
            pass
    finally:
        archiver.close()
