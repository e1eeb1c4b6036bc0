"""The loading pipeline: digest, trust policy, format refusals, schema check."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, ClassifierMixin

from modelstream.errors import (
    IntegrityError,
    ModelLoadError,
    ModelNotAllowed,
    SchemaMismatch,
    SignatureError,
)
from modelstream.models.deployment import Deployment, LiveModel, Role
from modelstream.models.descriptor import Lineage, ModelDescriptor
from modelstream.models.formats import inspect_bytes, load_verified, loader_for
from modelstream.models.integrity import KeyPair, read_private_key, sha256_hex, sign_descriptor
from modelstream.models.loaders.common import classifier_schema
from modelstream.models.refs import ModelRef
from tests.models.conftest import ENTRYPOINT


class Unlisted(ClassifierMixin, BaseEstimator):
    """A classifier type no trusted-types list names."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> Unlisted:
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = x.shape[1]
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.full((len(x), 2), 0.5)


def describe(fmt: str, data: bytes, entrypoint: str | None = None) -> ModelDescriptor:
    schema = classifier_schema(4)
    return ModelDescriptor(
        "svc", "m", 1, fmt, sha256_hex(data), schema, Lineage(0), data=data, entrypoint=entrypoint
    )


def deployment(**changes: object) -> Deployment:
    d = Deployment("svc", (LiveModel(ModelRef("m", 1), Role.CHAMPION),))
    return dataclasses.replace(d, **changes)  # type: ignore[arg-type]


def signed(d: ModelDescriptor, keys: KeyPair) -> ModelDescriptor:
    return sign_descriptor(d, read_private_key(keys.private_path))


def test_onnx_loads_when_everything_checks(onnx_bytes: bytes) -> None:
    model = load_verified(describe("onnx", onnx_bytes), onnx_bytes, deployment())
    model.close()


def test_wrong_digest_is_refused_before_loading(onnx_bytes: bytes) -> None:
    d = dataclasses.replace(describe("onnx", onnx_bytes), sha256="0" * 64)
    with pytest.raises(IntegrityError):
        load_verified(d, onnx_bytes, deployment())


def test_corrupt_bytes_with_a_matching_digest_fail_to_load() -> None:
    bad = b"corrupt" * 20
    with pytest.raises(ModelLoadError):
        load_verified(describe("onnx", bad), bad, deployment())


def test_unsigned_model_is_refused_where_signatures_are_required(
    onnx_bytes: bytes, keys: KeyPair
) -> None:
    policy = deployment(require_signature=True, trusted_keys={keys.key_id: keys.public_key})
    with pytest.raises(SignatureError, match="unsigned"):
        load_verified(describe("onnx", onnx_bytes), onnx_bytes, policy)
    load_verified(signed(describe("onnx", onnx_bytes), keys), onnx_bytes, policy).close()


def test_tampered_signed_model_is_refused(onnx_bytes: bytes, keys: KeyPair) -> None:
    trusted = {keys.key_id: keys.public_key}
    good = signed(describe("onnx", onnx_bytes), keys)
    tampered = onnx_bytes[:-1] + bytes([onnx_bytes[-1] ^ 1])
    with pytest.raises(IntegrityError):
        load_verified(good, tampered, deployment(require_signature=True, trusted_keys=trusted))
    # New bytes with a matching digest: the signature no longer covers them.
    forged = dataclasses.replace(good, sha256=sha256_hex(tampered))
    with pytest.raises(SignatureError, match="does not verify"):
        load_verified(forged, tampered, deployment(trusted_keys=trusted))


def test_river_unsigned_is_refused_and_never_unpickled(
    river_bytes: bytes, keys: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_unpickling(*args: object, **kwargs: object) -> None:
        raise AssertionError("unsigned bytes were unpickled")

    monkeypatch.setattr(pickle, "loads", no_unpickling)
    trusted = {keys.key_id: keys.public_key}
    with pytest.raises(SignatureError, match="unsigned"):
        load_verified(describe("river", river_bytes), river_bytes, deployment(trusted_keys=trusted))
    other_signer = signed(describe("river", river_bytes), keys)
    with pytest.raises(SignatureError, match="does not trust"):
        load_verified(other_signer, river_bytes, deployment())


def test_river_signed_by_a_trusted_key_loads(river_bytes: bytes, keys: KeyPair) -> None:
    d = signed(describe("river", river_bytes), keys)
    model = load_verified(d, river_bytes, deployment(trusted_keys={keys.key_id: keys.public_key}))
    assert model.predict({"input": np.zeros((3, 4), np.float32)})["label"].shape == (3,)


def test_skops_with_an_untrusted_type_is_refused() -> None:
    data = sio.dumps(Unlisted().fit(np.zeros((4, 4)), np.array([0, 1, 0, 1])))
    with pytest.raises(ModelLoadError, match=r"not trusted: .*Unlisted"):
        inspect_bytes("skops", data)
    with pytest.raises(ModelLoadError, match="not trusted"):
        load_verified(describe("skops", data), data, deployment())
    # Trusting it explicitly is the operator's choice.
    name = f"{Unlisted.__module__}.Unlisted"
    assert loader_for("skops").format == "skops"
    from modelstream.settings import Settings

    assert inspect_bytes("skops", data, settings=Settings(skops_trusted_types=(name,)))


def test_python_is_refused_unless_the_service_allows_it(python_bytes: bytes) -> None:
    d = describe("python", python_bytes, ENTRYPOINT)
    with pytest.raises(ModelNotAllowed, match="--allow-python"):
        load_verified(d, python_bytes, deployment())
    load_verified(d, python_bytes, deployment(allow_python=True)).close()


def test_schema_mismatch_is_refused(onnx_bytes: bytes) -> None:
    d = dataclasses.replace(describe("onnx", onnx_bytes), schema=classifier_schema(5))
    with pytest.raises(SchemaMismatch, match="publish it again"):
        load_verified(d, onnx_bytes, deployment())


def test_python_model_with_bad_entrypoint_is_a_load_error(python_bytes: bytes) -> None:
    d = describe("python", python_bytes, "no_such_module_xyz:Model")
    with pytest.raises(ModelLoadError, match="installed beside the scorer"):
        load_verified(d, python_bytes, deployment(allow_python=True))
