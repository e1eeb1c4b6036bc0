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
* a file is parsed once: skops is handed the trusted list and refuses anything else;
* the store keeps a private copy of each estimator it saved in this process (the newest
  version per model name) when its file holds only trusted types. :meth:`CheckpointStore.
  load` returns a copy of it instead of parsing the file when the file's sha256 is still
  that of the bytes this store wrote: the object is then exactly what those bytes
  rebuild, so no trust decision is skipped (a warm start's parent costs milliseconds).
  A file changed since (by anyone) goes through the trusted-types parse as always;
* the default root is ``<archive root>/../checkpoints`` (next to the archive: the machine's
  state lives in one directory); see :func:`default_root`.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelstream.errors import ConfigurationError, ModelLoadError
from modelstream.models.loaders.skops import TRUSTED_TYPES as SKOPS_TRUSTED
from modelstream.models.refs import ModelRef
from modelstream.settings import Settings

# Types River models are made of (the models and optimisers used with modelstream), the
# optimiser state a scikit-learn network keeps for partial_fit (plain arrays and numbers),
# and builtins skops does not trust by default; anything else must be listed by the caller.
TRUSTED_TYPES: tuple[str, ...] = (
    *SKOPS_TRUSTED,
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
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


@dataclass(frozen=True, slots=True)
class _Saved:
    """An estimator this store saved, and the sha256 of the bytes it wrote for it."""

    ref: ModelRef
    sha256: str
    estimator: Any


class CheckpointStore:
    """Fitted estimators by ``(service, name@version)``; see the module doc."""

    def __init__(
        self, root: Path, settings: Settings | None = None, extra_trusted: Sequence[str] = ()
    ) -> None:
        self.root = Path(root)
        configured = settings.skops_trusted_types if settings is not None else ()
        self._trusted = frozenset((*TRUSTED_TYPES, *configured, *extra_trusted))
        self._saved: dict[tuple[str, str], _Saved] = {}  # (service, name) -> newest saved

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
        self._keep(service, ref, data, estimator)
        return target

    def _keep(self, service: str, ref: ModelRef, data: bytes, estimator: Any) -> None:
        """Keep a copy of what was saved, for :meth:`load` -- only if the file would load:
        a type outside the trusted list must be refused now as after a restart."""
        import skops.io as sio

        self._saved.pop((service, ref.name), None)
        if set(sio.get_untrusted_types(data=data)) - self._trusted:
            return
        try:
            # A copy, so the caller changing its estimator later does not change ours.
            kept = _Saved(ref, hashlib.sha256(data).hexdigest(), copy.deepcopy(estimator))
        except Exception:  # not copyable: load() parses the file instead
            return
        self._saved[(service, ref.name)] = kept

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
        """A fresh copy of ``ref``'s estimator (the caller may change it);
        ``ModelLoadError`` if it is missing, not skops, or holds an untrusted type."""
        import skops.io as sio
        from skops.io.exceptions import UntrustedTypesFoundException

        path = self.path(service, ref)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelLoadError(
                f"no checkpoint of {ref} at {path} ({exc.strerror}); train it from scratch "
                "(warm start needs a version this trainer fitted)"
            ) from None
        saved = self._saved.get((service, ref.name))
        if (
            saved is not None
            and saved.ref == ref
            and hashlib.sha256(data).hexdigest() == saved.sha256
        ):
            return copy.deepcopy(saved.estimator)
        try:
            return sio.loads(data, trusted=sorted(self._trusted))
        except UntrustedTypesFoundException:
            # Only a refused file pays for a second parse, to name what was refused.
            unknown = sorted(set(sio.get_untrusted_types(data=data)) - self._trusted)
            raise ModelLoadError(
                f"checkpoint {path} holds types that are not trusted: {', '.join(unknown)}; "
                "if you trust them, add them to MODELSTREAM_SKOPS_TRUSTED_TYPES"
            ) from None
        except Exception as exc:
            raise ModelLoadError(f"checkpoint {path} is not a skops file: {exc}") from None
