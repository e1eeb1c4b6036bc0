"""The loading pipeline: the one place where model bytes become a running model.

:func:`load_verified` is what the scorer calls. In order, it:

1. verifies the sha256 of the bytes (``IntegrityError``);
2. applies the service's trust policy (:func:`check_policy`): a ``python`` model needs
   ``allow_python`` (``ModelNotAllowed``); a ``river`` model (pickled, so able to run
   code) always needs a signature that verifies against a trusted key; any model needs
   one when ``require_signature`` is set; a signature by a trusted key must verify even
   when not required (``SignatureError``);
3. loads the bytes with the format's loader (``ModelLoadError``, one line);
4. checks the loaded model's schema equals the descriptor's (``SchemaMismatch``).

No bytes reach a loader before steps 1 and 2 passed, so unsigned river bytes are never
unpickled and python entrypoints are never imported where the service forbids them.
"""

from __future__ import annotations

from modelstream.errors import (
    ConfigurationError,
    ModelLoadError,
    ModelNotAllowed,
    ModelstreamError,
    SchemaMismatch,
)
from modelstream.models.deployment import Deployment
from modelstream.models.descriptor import FORMATS, ModelDescriptor
from modelstream.models.integrity import verify_digest, verify_signature
from modelstream.models.loader import LoadedModel, ModelLoader
from modelstream.models.loaders.common import load_error
from modelstream.models.schema import ModelSchema
from modelstream.settings import Settings


def loader_for(format: str, settings: Settings | None = None) -> ModelLoader:
    """The loader of ``format``; ``ConfigurationError`` for an unknown format."""
    settings = settings or Settings()
    if format == "onnx":
        from modelstream.models.loaders.onnx import OnnxLoader

        return OnnxLoader(settings.onnx_intra_op_threads)
    if format == "river":
        from modelstream.models.loaders.river import RiverLoader

        return RiverLoader()
    if format == "skops":
        from modelstream.models.loaders.skops import SkopsLoader

        return SkopsLoader(settings.skops_trusted_types)
    if format == "python":
        from modelstream.models.loaders.python import PythonLoader

        return PythonLoader()
    raise ConfigurationError(f"unknown model format {format!r}: use one of {', '.join(FORMATS)}")


def format_for_path(name: str) -> str:
    """The format a file name suggests: ``.onnx``, ``.skops``, ``.river``/``.pkl``, ``.json``."""
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    known = {"onnx": "onnx", "skops": "skops", "river": "river", "pkl": "river", "json": "python"}
    if suffix not in known:
        raise ConfigurationError(
            f"cannot tell the format of {name!r} from its extension: pass --format "
            f"({', '.join(FORMATS)})"
        )
    return known[suffix]


def check_policy(descriptor: ModelDescriptor, deployment: Deployment) -> None:
    """Raise unless ``deployment``'s trust policy allows loading ``descriptor``."""
    if descriptor.format == "python" and not deployment.allow_python:
        raise ModelNotAllowed(
            f"model {descriptor.ref} is a python model ({descriptor.entrypoint}) and service "
            f"{deployment.service} does not allow python models: deploy with --allow-python "
            "(or allow_python: true in the spec) if you trust the installed code"
        )
    signed_by_trusted = descriptor.key_id is not None and descriptor.key_id in (
        deployment.trusted_keys
    )
    if descriptor.format == "river" or deployment.require_signature or signed_by_trusted:
        verify_signature(descriptor, deployment.trusted_keys)


def check_schema(descriptor: ModelDescriptor, actual: ModelSchema) -> None:
    """Raise ``SchemaMismatch`` unless the loaded model's schema is the declared one."""
    if actual != descriptor.schema:
        raise SchemaMismatch(
            f"model {descriptor.ref} loads with schema {actual.to_json()} but its descriptor "
            f"declares {descriptor.schema.to_json()}; publish it again so the schema is read "
            "from the model itself"
        )


def load_verified(
    descriptor: ModelDescriptor,
    data: bytes,
    deployment: Deployment,
    *,
    settings: Settings | None = None,
) -> LoadedModel:
    """A loaded model for ``data``, after every check in the module docstring."""
    verify_digest(descriptor, data)
    check_policy(descriptor, deployment)
    loader = loader_for(descriptor.format, settings)
    try:
        model = loader.load(data, descriptor)
    except ModelstreamError:
        raise
    except Exception as exc:  # a loader bug or runtime surprise is still a load failure
        raise load_error(descriptor.format, exc) from None
    try:
        check_schema(descriptor, model.schema)
    except SchemaMismatch:
        model.close()
        raise
    return model


def inspect_bytes(
    format: str, data: bytes, *, entrypoint: str | None = None, settings: Settings | None = None
) -> ModelSchema:
    """Load ``data`` once to validate it and read its schema; ``ModelLoadError`` if it fails."""
    loader = loader_for(format, settings)
    try:
        return loader.inspect(data, entrypoint=entrypoint)
    except ModelstreamError:
        raise
    except Exception as exc:
        raise load_error(format, exc) from None


__all__ = [
    "ModelLoadError",
    "check_policy",
    "check_schema",
    "format_for_path",
    "inspect_bytes",
    "load_verified",
    "loader_for",
]
