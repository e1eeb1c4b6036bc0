"""The model-loader port: one implementation per format, all under one contract suite.

Lifecycle contract of a :class:`LoadedModel`: it is built by :meth:`ModelLoader.load`
from bytes whose digest (and, where required, signature) were already verified; it is
*warmed* by one call to :meth:`LoadedModel.predict` on a sample batch before it serves;
``predict`` is called from one thread at a time, with a batch along the first axis of
every input, and returns arrays whose first axis has the same length; it may raise any
exception, which the scorer turns into an error score for the batch's requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy.typing as npt

from modelstream.models.descriptor import ModelDescriptor
from modelstream.models.schema import ModelSchema

Arrays = Mapping[str, npt.NDArray[Any]]


@runtime_checkable
class LoadedModel(Protocol):
    """A model ready to score batches."""

    @property
    def schema(self) -> ModelSchema: ...

    def predict(self, inputs: Arrays) -> dict[str, npt.NDArray[Any]]:
        """Outputs by name for a batch of inputs by name."""
        ...

    def close(self) -> None:
        """Release the runtime's resources (sessions, threads)."""
        ...


@runtime_checkable
class ModelLoader(Protocol):
    """Loads the bytes of one format."""

    @property
    def format(self) -> str: ...

    def inspect(self, data: bytes, *, entrypoint: str | None = None) -> ModelSchema:
        """Load ``data`` once to validate it and read its schema (used when publishing).

        Raises ``ModelLoadError`` with a one-line reason when the bytes do not load.
        """
        ...

    def load(self, data: bytes, descriptor: ModelDescriptor) -> LoadedModel:
        """A loaded model for verified ``data``; raises ``ModelLoadError`` on failure."""
        ...
