"""Fixtures of the adapter tests: two versions of a real ONNX classifier and a registry."""

from __future__ import annotations

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
COLUMNS = [f"f{i}" for i in range(FEATURES)]


@dataclass(frozen=True)
class Versions:
    """``models[v - 1]`` is the ONNX bytes of version ``v``; ``x`` rows to score."""

    models: list[bytes]
    x: npt.NDArray[np.float32]

    def expected(self, version: int, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        import onnxruntime as ort

        session = ort.InferenceSession(self.models[version - 1], providers=["CPUExecutionProvider"])
        return np.asarray(session.run(["probabilities"], {"input": x.astype(np.float32)})[0])


@pytest.fixture(scope="session")
def versions() -> Versions:
    from modelstream.testing.sklearn import fit, make_dataset, to_onnx

    models = [
        to_onnx(fit("logreg", make_dataset(300, FEATURES, seed=s), s), FEATURES) for s in (0, 7)
    ]
    return Versions(models, make_dataset(300, FEATURES).x[:40])


@dataclass
class World:
    url: str
    settings: Settings
    backplane: Backplane
    registry: Registry
    service: str = "svc"


@pytest.fixture
def sqlite_world(tmp_path: Path) -> Iterator[World]:
    url = f"sqlite://{tmp_path / 'bp'}"
    settings = Settings(
        backplane=url, model_store_dir=str(tmp_path / "store"), default_partitions=2
    )
    bp = open_backplane(url, settings)
    yield World(url, settings, bp, Registry(bp, settings))
    bp.close()
