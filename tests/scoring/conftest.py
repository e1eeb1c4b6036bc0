"""Fixtures of the scorer tests: real ONNX models and real backplanes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.models.registry import Registry
from modelstream.settings import Settings

FEATURES = 4
VERSIONS = 10


@dataclass(frozen=True)
class Models:
    """ONNX classifiers on the same 4 features: ``lr[i]`` trained with seed ``i``."""

    lr: list[bytes]
    tree: bytes
    x: npt.NDArray[np.float32]

    def expected(self, data: bytes, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        import onnxruntime as ort

        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        return np.asarray(session.run(["probabilities"], {"input": x})[0])


@pytest.fixture(scope="session")
def onnx_models() -> Models:
    from modelstream.testing.sklearn import fit, make_dataset, onnx_classifier, to_onnx

    data = make_dataset(300, FEATURES)
    lr = [
        to_onnx(fit("logreg", make_dataset(300, FEATURES, seed=s), s), FEATURES)
        for s in range(VERSIONS + 1)
    ]
    tree, _ = onnx_classifier("tree", features=FEATURES, rows=300)
    return Models(lr, tree, data.x[:64])


@dataclass
class Env:
    backplane: Backplane
    settings: Settings
    registry: Registry
    service: str = "svc"


def _open(url: str, tmp_path: Path, **kw: Any) -> Env:
    settings = Settings(backplane=url, model_store_dir=str(tmp_path / "store"), **kw)
    bp = open_backplane(url, settings)
    return Env(bp, settings, Registry(bp, settings))


@pytest.fixture
def sqlite_env(tmp_path: Path) -> Iterator[Env]:
    env = _open(
        f"sqlite://{tmp_path / 'bp'}", tmp_path, default_partitions=4, session_timeout_ms=2000
    )
    yield env
    env.backplane.close()


@pytest.fixture
def memory_env(tmp_path: Path) -> Iterator[Env]:
    env = _open("memory://", tmp_path, default_partitions=2)
    yield env
    env.backplane.close()


@pytest.fixture
def kafka_env(tmp_path: Path, kafka_broker: str) -> Iterator[Env]:
    env = _open(f"kafka://{kafka_broker}", tmp_path, default_partitions=4, session_timeout_ms=3000)
    env.service = f"svc-{uuid.uuid4().hex[:8]}"  # the broker is shared by the session
    yield env
    env.backplane.close()
