"""The ModelLoader contract, run against every format."""

from __future__ import annotations

import numpy as np
import pytest

from modelstream.errors import ModelLoadError
from modelstream.models.descriptor import Lineage, ModelDescriptor
from modelstream.models.formats import loader_for
from modelstream.models.integrity import sha256_hex
from modelstream.models.loader import LoadedModel, ModelLoader
from modelstream.models.loaders.common import classifier_schema
from tests.models.conftest import ENTRYPOINT, FEATURES

FORMATS = ["onnx", "river", "skops", "python"]


@pytest.fixture(params=FORMATS)
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def model_bytes(fmt: str, request: pytest.FixtureRequest) -> bytes:
    return bytes(request.getfixturevalue(f"{fmt}_bytes"))


def entrypoint(fmt: str) -> str | None:
    return ENTRYPOINT if fmt == "python" else None


def test_loader_is_a_model_loader(fmt: str) -> None:
    loader = loader_for(fmt)
    assert isinstance(loader, ModelLoader)
    assert loader.format == fmt


def test_inspect_gives_the_classifier_schema(fmt: str, model_bytes: bytes) -> None:
    schema = loader_for(fmt).inspect(model_bytes, entrypoint=entrypoint(fmt))
    assert schema == classifier_schema(FEATURES)


def test_load_and_predict_keep_the_batch_dimension(
    fmt: str, model_bytes: bytes, batch: dict[str, np.ndarray]
) -> None:
    loader = loader_for(fmt)
    schema = loader.inspect(model_bytes, entrypoint=entrypoint(fmt))
    descriptor = ModelDescriptor(
        "svc", "m", 1, fmt, sha256_hex(model_bytes), schema, Lineage(0),
        data=model_bytes, entrypoint=entrypoint(fmt),
    )  # fmt: skip
    model = loader.load(model_bytes, descriptor)
    try:
        assert isinstance(model, LoadedModel)
        assert model.schema == schema
        outputs = model.predict(batch)
        assert set(outputs) == {"label", "probabilities"}
        assert outputs["label"].shape == (7,) and outputs["label"].dtype == np.int64
        assert outputs["probabilities"].shape == (7, 2)
        assert outputs["probabilities"].dtype == np.float32
        np.testing.assert_allclose(outputs["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
    finally:
        model.close()


@pytest.mark.parametrize("bad", [b"", b"\x00\x01garbage\xff" * 10])
def test_bad_bytes_raise_a_one_line_load_error(fmt: str, bad: bytes) -> None:
    if fmt == "python" and bad == b"":
        bad = b"[1, 2]"  # empty bytes are a valid (empty) config for python models
    with pytest.raises(ModelLoadError) as info:
        loader_for(fmt).inspect(bad, entrypoint=entrypoint(fmt))
    assert "\n" not in str(info.value)
