"""Integrity and trust of model bytes: sha256 digests and Ed25519 signatures.

Contracts:

* :func:`verify_digest` is called before any bytes are loaded, always; a mismatch is an
  :class:`~modelstream.errors.IntegrityError`.
* A signature covers :meth:`ModelDescriptor.signed_message` (service, name, version,
  format and sha256), so tampering with the bytes breaks the digest and tampering with
  the digest breaks the signature.
* Public keys travel as base64 of the raw 32-byte Ed25519 key (compact, JSON-friendly);
  a key's id is the first 16 hex digits of the sha256 of those raw bytes. A deployment's
  ``trusted_keys`` maps key id to that base64 text.
* On disk, a key pair is ``<name>.key`` (PKCS#8 PEM, mode 0600) and ``<name>.pub``
  (SubjectPublicKeyInfo PEM); :func:`read_public_key` also accepts the base64 form.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from modelstream.errors import ConfigurationError, IntegrityError, SignatureError
from modelstream.models.descriptor import ModelDescriptor


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_digest(descriptor: ModelDescriptor, data: bytes) -> None:
    """Raise ``IntegrityError`` unless ``data`` hashes to ``descriptor.sha256``."""
    actual = sha256_hex(data)
    if actual != descriptor.sha256:
        raise IntegrityError(
            f"model {descriptor.ref} of service {descriptor.service}: the bytes hash to "
            f"{actual[:16]}… but the descriptor says {descriptor.sha256[:16]}…; the bytes "
            "were altered or truncated: publish the model again from its original file"
        )


def public_key_text(key: Ed25519PublicKey) -> str:
    """The base64 of the raw public key, as stored in ``trusted_keys``."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class KeyPair:
    """Where :func:`generate_keys` wrote a key pair, and the key's id."""

    private_path: Path
    public_path: Path
    key_id: str
    public_key: str  # base64 raw, the value for trusted_keys


def generate_keys(out_dir: Path, name: str = "modelstream") -> KeyPair:
    """Write a new Ed25519 key pair under ``out_dir``; never overwrites existing files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    for path in (private_path, public_path):
        if path.exists():
            raise ConfigurationError(
                f"{path} already exists; choose another --out directory or remove it first"
            )
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Create with 0600 from the start so the key is never readable by others.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public = private.public_key()
    public_path.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return KeyPair(private_path, public_path, key_id(public), public_key_text(public))


def read_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in PEM file ``path``; ``ConfigurationError`` otherwise."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigurationError(f"cannot read signing key {path}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"{path} is not an unencrypted PEM private key; make one with "
            "`modelstream keys generate --out DIR`"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"{path} is not an Ed25519 key; use `modelstream keys generate`")
    return key


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key from PEM text or base64 of the raw key."""
    stripped = text.strip()
    try:
        if stripped.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(stripped.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError("not Ed25519")
            return key
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(stripped, validate=True))
    except (ValueError, TypeError, binascii.Error):
        raise ConfigurationError(
            "not an Ed25519 public key: pass the .pub file written by `modelstream keys generate`"
        ) from None


def read_public_key(path: Path) -> tuple[str, str]:
    """``(key id, base64 key)`` of the public key file ``path``, ready for trusted_keys."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigurationError(f"cannot read public key {path}: {exc.strerror}") from None
    key = parse_public_key(text)
    return key_id(key), public_key_text(key)


def sign_descriptor(descriptor: ModelDescriptor, key: Ed25519PrivateKey) -> ModelDescriptor:
    """``descriptor`` with its signature and key id set."""
    signature = base64.b64encode(key.sign(descriptor.signed_message())).decode()
    return dataclasses.replace(descriptor, signature=signature, key_id=key_id(key.public_key()))


def verify_signature(descriptor: ModelDescriptor, trusted_keys: Mapping[str, str]) -> str:
    """Return the trusted key id that signed ``descriptor``; raise ``SignatureError`` if none.

    The key is looked up by the descriptor's key id, and the id is recomputed from the
    trusted key itself, so a mislabelled ``trusted_keys`` entry cannot vouch for anything.
    """
    ref = f"{descriptor.ref} of service {descriptor.service}"
    if descriptor.signature is None or descriptor.key_id is None:
        raise SignatureError(
            f"model {ref} is unsigned but must be signed: publish it again with "
            "--sign-key KEY, whose public key the service trusts (deploy --trust-key KEY.pub)"
        )
    trusted = trusted_keys.get(descriptor.key_id)
    if trusted is None:
        raise SignatureError(
            f"model {ref} is signed by key {descriptor.key_id}, which the service does not "
            "trust: add its public key with `modelstream deploy ... --trust-key KEY.pub`"
        )
    try:
        public = parse_public_key(trusted)
    except ConfigurationError:
        raise SignatureError(
            f"trusted key {descriptor.key_id} of the service is not a valid Ed25519 public "
            "key: deploy again with --trust-key pointing at the .pub file"
        ) from None
    if key_id(public) != descriptor.key_id:
        raise SignatureError(
            f"trusted key entry {descriptor.key_id} holds a different key; deploy again "
            "with --trust-key pointing at the right .pub file"
        )
    try:
        public.verify(base64.b64decode(descriptor.signature), descriptor.signed_message())
    except (InvalidSignature, ValueError, binascii.Error):
        raise SignatureError(
            f"the signature of model {ref} does not verify: the descriptor was altered "
            "after signing; publish the model again from its original file"
        ) from None
    return descriptor.key_id
