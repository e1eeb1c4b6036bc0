"""Where model bytes live: inline in the descriptor, or in a content-addressed file.

Contract: bytes up to ``Settings.model_inline_max_bytes`` (and no more than fit one record
of the backplane, base64-encoded: :func:`inline_limit`) travel inline; larger bytes are
written once to ``<store dir>/<sha256>.model`` and the descriptor carries the file's
absolute ``file://`` URI. The store directory is ``Settings.model_store_dir`` or, on the
SQLite engine, ``<backplane dir>/models``; every scorer must be able to read it (on Kafka
that means a shared filesystem, so it must be configured). :func:`fetch_bytes` returns
the bytes of any descriptor and always verifies their sha256.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

from modelstream.backplane.factory import sqlite_path
from modelstream.errors import ConfigurationError, ModelLoadError
from modelstream.models.descriptor import ModelDescriptor
from modelstream.models.integrity import sha256_hex, verify_digest
from modelstream.settings import Settings

DESCRIPTOR_ROOM = 16 * 1024  # schema, lineage, signature: what a descriptor adds


def store_dir(settings: Settings) -> Path | None:
    """The model store directory for ``settings``, or ``None`` if there is none."""
    if settings.model_store_dir:
        return Path(settings.model_store_dir).resolve()
    if settings.backplane.startswith("sqlite://"):
        return (sqlite_path(settings.backplane) / "models").resolve()
    return None


def inline_limit(settings: Settings, max_record_bytes: int) -> int:
    """The largest model that travels inline: ``model_inline_max_bytes``, and no more
    than fits one record of the backplane once base64-encoded (4/3 of its size) with
    room for the rest of the descriptor."""
    return min(settings.model_inline_max_bytes, (max_record_bytes - DESCRIPTOR_ROOM) * 3 // 4)


def place(
    data: bytes, settings: Settings, inline_max: int | None = None
) -> tuple[bytes | None, str | None]:
    """``(inline bytes, None)`` or ``(None, file URI)`` for ``data``: inline up to
    ``inline_max`` bytes (see :func:`inline_limit`; default ``model_inline_max_bytes``)."""
    if inline_max is None:
        inline_max = settings.model_inline_max_bytes
    if len(data) <= inline_max:
        return data, None
    directory = store_dir(settings)
    if directory is None:
        raise ConfigurationError(
            f"the model is {len(data)} bytes, above the {inline_max} that travel inline on "
            "this backplane (model_inline_max_bytes, and the backplane's record limit), and "
            "this backplane has no directory: set MODELSTREAM_MODEL_STORE_DIR to a "
            "directory every scorer can read"
        )
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{sha256_hex(data)}.model"
    if not target.exists():
        # Write then rename, so a reader never sees a half-written file under the name.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return None, target.as_uri()


def path_of(location: str) -> Path:
    """The local path of a ``file://`` URI."""
    parts = urlsplit(location)
    if parts.scheme != "file":
        raise ModelLoadError(f"model location {location!r} is not a file:// URI")
    return Path(unquote(parts.path))


def fetch_bytes(descriptor: ModelDescriptor) -> bytes:
    """The model's bytes, verified against its sha256 (``IntegrityError`` on mismatch)."""
    if descriptor.data is not None:
        data = descriptor.data
    elif descriptor.location is not None:
        path = path_of(descriptor.location)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelLoadError(
                f"model {descriptor.ref}: cannot read {path} ({exc.strerror}); the model "
                "store must be readable by every scorer (MODELSTREAM_MODEL_STORE_DIR)"
            ) from None
    else:
        raise ModelLoadError(f"model {descriptor.ref} has neither inline bytes nor a location")
    verify_digest(descriptor, data)
    return data
