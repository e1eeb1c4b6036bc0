"""Digests, signatures, keys and the model store."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from modelstream.errors import ConfigurationError, IntegrityError, SignatureError
from modelstream.models.integrity import (
    KeyPair,
    generate_keys,
    read_private_key,
    read_public_key,
    sign_descriptor,
    verify_digest,
    verify_signature,
)
from modelstream.models.store import fetch_bytes, place
from modelstream.settings import Settings
from tests.models.test_codec import descriptor


def test_digest_mismatch_is_refused() -> None:
    d = descriptor()
    verify_digest(d, d.data or b"")
    with pytest.raises(IntegrityError, match="publish the model again"):
        verify_digest(d, b"other bytes")
    with pytest.raises(IntegrityError):
        fetch_bytes(dataclasses.replace(d, data=b"tampered"))


def test_keys_are_written_once_with_a_private_mode(keys: KeyPair) -> None:
    assert keys.private_path.stat().st_mode & 0o777 == 0o600
    assert read_public_key(keys.public_path) == (keys.key_id, keys.public_key)
    assert len(keys.key_id) == 16
    with pytest.raises(ConfigurationError, match="already exists"):
        generate_keys(keys.private_path.parent)


def test_signature_verifies_only_against_trusted_keys(keys: KeyPair, tmp_path: Path) -> None:
    signed = sign_descriptor(descriptor(), read_private_key(keys.private_path))
    assert verify_signature(signed, {keys.key_id: keys.public_key}) == keys.key_id
    with pytest.raises(SignatureError, match="unsigned"):
        verify_signature(descriptor(), {keys.key_id: keys.public_key})
    with pytest.raises(SignatureError, match="does not trust"):
        verify_signature(signed, {})
    other = generate_keys(tmp_path / "other")
    with pytest.raises(SignatureError, match="different key"):
        verify_signature(signed, {keys.key_id: other.public_key})


def test_tampered_descriptor_or_signature_is_refused(keys: KeyPair) -> None:
    trusted = {keys.key_id: keys.public_key}
    signed = sign_descriptor(descriptor(), read_private_key(keys.private_path))
    for tampered in (
        dataclasses.replace(signed, sha256="0" * 64),
        dataclasses.replace(signed, version=4),
        dataclasses.replace(signed, signature="A" * 88),
    ):
        with pytest.raises(SignatureError, match="does not verify"):
            verify_signature(tampered, trusted)


def test_a_non_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    with pytest.raises(ConfigurationError, match="keys generate"):
        read_private_key(junk)
    with pytest.raises(ConfigurationError, match="public key"):
        read_public_key(junk)


def test_large_models_go_to_the_content_addressed_store(tmp_path: Path) -> None:
    settings = Settings(
        backplane="memory://", model_inline_max_bytes=10, model_store_dir=str(tmp_path)
    )
    assert place(b"small", settings) == (b"small", None)
    data = b"x" * 100
    inline, location = place(data, settings)
    assert inline is None and location is not None and location.startswith("file://")
    assert place(data, settings) == (None, location)  # same bytes, same file
    d = dataclasses.replace(descriptor(), data=None, location=location)
    with pytest.raises(IntegrityError):
        fetch_bytes(d)  # the descriptor's digest is of other bytes
    from modelstream.models.integrity import sha256_hex

    assert fetch_bytes(dataclasses.replace(d, sha256=sha256_hex(data))) == data


def test_large_models_need_a_store_directory() -> None:
    settings = Settings(backplane="memory://", model_inline_max_bytes=1)
    with pytest.raises(ConfigurationError, match="MODELSTREAM_MODEL_STORE_DIR"):
        place(b"too big", settings)


def test_sqlite_backplane_stores_beside_its_topics(tmp_path: Path) -> None:
    settings = Settings(backplane=f"sqlite://{tmp_path / 'bp'}", model_inline_max_bytes=1)
    _, location = place(b"bytes", settings)
    assert location is not None and str(tmp_path / "bp" / "models") in location
