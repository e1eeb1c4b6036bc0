"""A model's input and output schema: tensor names, protocol datatypes and shapes.

Shapes use ``-1`` for a dimension of any size (the batch dimension, usually the first).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy.typing as npt

from modelstream.errors import SchemaMismatch
from modelstream.wire.tensors import datatype_of


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One named tensor a model takes or returns."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def accepts(self, array: npt.NDArray[Any]) -> bool:
        """Whether ``array`` has this spec's rank, fixed dimensions and datatype."""
        have = array.shape
        if len(have) != len(self.shape):
            return False
        for d, a in zip(self.shape, have, strict=True):  # a loop, not any(): this is hot
            if d not in (-1, a):
                return False
        return datatype_of(array) == self.datatype


@dataclass(frozen=True, slots=True)
class ModelSchema:
    """All inputs and outputs of a model."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ModelSchema:
        def specs(items: Any) -> tuple[TensorSpec, ...]:
            return tuple(
                TensorSpec(str(i["name"]), str(i["datatype"]), tuple(int(d) for d in i["shape"]))
                for i in items or ()
            )

        return cls(specs(obj.get("inputs")), specs(obj.get("outputs")))

    def check_inputs(self, inputs: Mapping[str, npt.NDArray[Any]]) -> None:
        """Raise ``SchemaMismatch`` naming the first input that does not fit."""
        for spec in self.inputs:
            array = inputs.get(spec.name)
            if array is None:
                raise SchemaMismatch(
                    f"input {spec.name!r} is missing; the model takes "
                    f"{', '.join(s.name for s in self.inputs)}"
                )
            if not spec.accepts(array):
                raise SchemaMismatch(
                    f"input {spec.name!r} must be {spec.datatype} of shape {list(spec.shape)}, "
                    f"got {datatype_of(array)} of shape {list(array.shape)}"
                )

    def compatible_with(self, other: ModelSchema) -> bool:
        """Whether a model of ``other`` schema can replace one of this schema."""
        return self.inputs == other.inputs and {o.name for o in self.outputs} <= {
            o.name for o in other.outputs
        }
