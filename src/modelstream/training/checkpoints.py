"""The trainer's own checkpoint store: fitted estimators, for warm starts.

ONNX cannot be turned back into a scikit-learn estimator, so to continue a model the
trainer keeps the estimator it fitted, next to the version it published. Contract:

* one file per model version: ``<root>/<service>/<name>@<version>.skops``, written by the
  trainer itself (atomically: a temporary name, fsync, rename). Nothing read from a
  stream or a request is ever stored here or unpickled: the store holds only what this
  trainer fitted;
* files are **skops**, never pickle, and loading refuses any type outside an explicit
  trusted list (:data:`TRUSTED_TYPES`, the skops loader's list, ``Settings.
  skops_trusted_types`` and the caller's extras), naming the type, before anything is
  built -- so a file someone else dropped in the directory cannot run code;
* River models are stored the same way (skops rebuilds them from their state);
* the default root is ``<archive root>/../checkpoints`` (next to the archive: the machine's
  state lives in one directory); see :func:`default_root`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelstream.errors import ConfigurationError, ModelLoadError
from modelstream.models.loaders.skops import TRUSTED_TYPES as SKOPS_TRUSTED
from modelstream.models.refs import ModelRef
from modelstream.settings import Settings

# Types River models are made of (the models and optimisers used with modelstream), and
# builtins skops does not trust by default; anything else must be listed by the caller.
TRUSTED_TYPES: tuple[str, ...] = (
    *SKOPS_TRUSTED,
    "builtins.frozenset",
    "collections.Counter",
    "collections.defaultdict",
    "river._river_rust.vectordict.VectorDict",
    "river.compose.pipeline.Pipeline",
    "river.linear_model.log_reg.LogisticRegression",
    "river.linear_model.lin_reg.LinearRegression",
    "river.optim.initializers.Zeros",
    "river.optim.losses.Log",
    "river.optim.losses.Squared",
    "river.optim.schedulers.Constant",
    "river.optim.sgd.SGD",
    "river.preprocessing.scale.StandardScaler",
    "river.stats.mean.Mean",
    "river.stats.var.Var",
)

_FILE = re.compile(r"^(?P<name>.+)@(?P<version>\d+)\.skops$")


def default_root(settings: Settings) -> Path:
    """Where checkpoints go unless the trainer is told otherwise."""
    return settings.archive_root().parent / "checkpoints"


class CheckpointStore:
    """Fitted estimators by ``(service, name@version)``; see the module doc."""

    def __init__(
        self, root: Path, settings: Settings | None = None, extra_trusted: Sequence[str] = ()
    ) -> None:
        self.root = Path(root)
        configured = settings.skops_trusted_types if settings is not None else ()
        self._trusted = frozenset((*TRUSTED_TYPES, *configured, *extra_trusted))

    def path(self, service: str, ref: ModelRef) -> Path:
        return self.root / service / f"{ref}.skops"

    def save(self, service: str, ref: ModelRef, estimator: Any) -> Path:
        """Write ``estimator`` as ``ref``'s checkpoint; return its path."""
        import skops.io as sio

        target = self.path(service, ref)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = sio.dumps(estimator)
        except Exception as exc:  # skops refuses objects it cannot describe
            raise ConfigurationError(
                f"cannot checkpoint {type(estimator).__name__} with skops ({exc}); warm "
                "start needs an estimator skops can save"
            ) from None
        temporary = target.with_name(f".{target.name}.tmp")
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(target)
        return target

    def versions(self, service: str, name: str) -> list[int]:
        """Versions of ``name`` with a checkpoint, ascending."""
        directory = self.root / service
        found = []
        for path in directory.glob("*.skops") if directory.is_dir() else ():
            match = _FILE.match(path.name)
            if match and match["name"] == name:
                found.append(int(match["version"]))
        return sorted(found)

    def latest(self, service: str, name: str) -> ModelRef | None:
        """The newest checkpointed version of ``name``, if any."""
        versions = self.versions(service, name)
        return ModelRef(name, versions[-1]) if versions else None

    def load(self, service: str, ref: ModelRef) -> Any:
        """A fresh copy of ``ref``'s estimator; ``ModelLoadError`` if untrusted or missing."""
        import skops.io as sio

        path = self.path(service, ref)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelLoadError(
                f"no checkpoint of {ref} at {path} ({exc.strerror}); train it from scratch "
                "(warm start needs a version this trainer fitted)"
            ) from None
        try:
            untrusted = set(sio.get_untrusted_types(data=data))
        except Exception as exc:
            raise ModelLoadError(f"checkpoint {path} is not a skops file: {exc}") from None
        unknown = sorted(untrusted - self._trusted)
        if unknown:
            raise ModelLoadError(
                f"checkpoint {path} holds types that are not trusted: {', '.join(unknown)}; "
                "if you trust them, add them to MODELSTREAM_SKOPS_TRUSTED_TYPES"
            )
        return sio.loads(data, trusted=sorted(untrusted))
