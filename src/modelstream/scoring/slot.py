"""The slot: which loaded version of one live model name is serving right now.

Contract:

* :meth:`ModelSlot.current` returns an immutable :class:`ActiveModel` (the version, its
  role, the loaded model). The scorer reads it **once per batch** and uses that object
  for the whole batch, so a :meth:`ModelSlot.swap` made by another thread takes effect
  between two batches, never inside one: each score names the version that computed it.
* :meth:`ModelSlot.swap` installs an already loaded, validated and warmed model in one
  assignment under a lock; the previous model is *retired*, not closed, because a batch
  may still be running on it. The scorer closes retired models between batches
  (:meth:`ModelSlot.take_retired`).
* :meth:`ModelSlot.set_role` changes the role of the serving version without a reload
  (a promotion of the same version).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from modelstream.models.descriptor import ModelDescriptor
from modelstream.models.loader import LoadedModel
from modelstream.models.refs import ModelRef
from modelstream.models.schema import ModelSchema


@dataclass(frozen=True, slots=True)
class ActiveModel:
    """A version ready to serve: loaded, validated and warmed."""

    ref: ModelRef
    role: str
    model: LoadedModel
    descriptor: ModelDescriptor
    loaded_at: int  # ms since the epoch when it started serving

    @property
    def schema(self) -> ModelSchema:
        return self.model.schema


class ModelSlot:
    """Holds the serving version of one model name; thread-safe."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._active: ActiveModel | None = None
        self._retired: list[LoadedModel] = []
        self._swaps = 0
        self._cond = threading.Condition()

    def current(self) -> ActiveModel | None:
        """The serving version, or ``None`` before the first successful load."""
        return self._active  # one attribute read: atomic under the GIL

    @property
    def swaps(self) -> int:
        """How many times a version was installed (the first load counts)."""
        return self._swaps

    def swap(self, new: ActiveModel) -> ActiveModel | None:
        """Make ``new`` the serving version; return the one it replaced (now retired)."""
        with self._cond:
            old = self._active
            self._active = new
            self._swaps += 1
            if old is not None and old.model is not new.model:
                self._retired.append(old.model)
            self._cond.notify_all()
            return old

    def set_role(self, role: str) -> None:
        """Change the serving version's role (promotion without a new version)."""
        with self._cond:
            if self._active is not None and self._active.role != role:
                self._active = replace(self._active, role=role)

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a version to serve; whether one does."""
        with self._cond:
            return self._cond.wait_for(lambda: self._active is not None, timeout)

    def take_retired(self) -> list[LoadedModel]:
        """Models replaced since the last call; the caller closes them."""
        with self._cond:
            retired, self._retired = self._retired, []
            return retired

    def clear(self) -> list[LoadedModel]:
        """Empty the slot (on stop); every model it held, for the caller to close."""
        with self._cond:
            models = self._retired
            if self._active is not None:
                models.append(self._active.model)
            self._active = None
            self._retired = []
            return models
