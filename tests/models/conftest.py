"""Fixtures of the models tests: real model bytes of every format, keys, registries."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from modelstream.backplane.memory import MemoryBackplane
from modelstream.backplane.port import Backplane
from modelstream.models.integrity import KeyPair, generate_keys
from modelstream.models.registry import Registry
from modelstream.settings import Settings
from modelstream.testing.models import config

FEATURES = 4
ENTRYPOINT = "modelstream.testing.models:ThresholdModel"


@pytest.fixture(scope="session")
def onnx_bytes() -> bytes:
    from modelstream.testing.sklearn import onnx_classifier

    data, _ = onnx_classifier("logreg", features=FEATURES, rows=300)
    return data


@pytest.fixture(scope="session")
def skops_bytes() -> bytes:
    import skops.io as sio

    from modelstream.testing.sklearn import fit, make_dataset

    return bytes(sio.dumps(fit("logreg", make_dataset(300, FEATURES))))


@pytest.fixture(scope="session")
def river_bytes() -> bytes:
    from river import linear_model

    from modelstream.models.loaders.river import pack
    from modelstream.testing.sklearn import make_dataset

    data = make_dataset(200, FEATURES)
    model = linear_model.LogisticRegression()
    for row, label in zip(data.x, data.y, strict=True):
        model.learn_one({str(i): float(v) for i, v in enumerate(row)}, bool(label))
    return pack(model, FEATURES)


@pytest.fixture(scope="session")
def python_bytes() -> bytes:
    return config(threshold=0.0)


@pytest.fixture
def batch() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"input": rng.normal(size=(7, FEATURES)).astype(np.float32)}


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    return generate_keys(tmp_path / "keys")


@pytest.fixture(params=["memory", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Backplane, Settings]]:
    if request.param == "memory":
        settings = Settings(backplane="memory://", model_store_dir=str(tmp_path / "store"))
        backplane: Backplane = MemoryBackplane(settings)
    else:
        from modelstream.backplane.sqlite.engine import SqliteBackplane

        settings = Settings(backplane=f"sqlite://{tmp_path / 'bp'}")
        backplane = SqliteBackplane(tmp_path / "bp", settings)
    yield backplane, settings
    backplane.close()


@pytest.fixture
def registry(engine: tuple[Backplane, Settings]) -> Registry:
    return Registry(*engine)


@pytest.fixture
def published(registry: Registry, onnx_bytes: bytes) -> Callable[[str], str]:
    """Publish the ONNX model under ``name`` in service ``svc``; returns ``name@version``."""

    def publish(name: str) -> str:
        return str(registry.publish("svc", name, onnx_bytes, format="onnx").ref)

    return publish
