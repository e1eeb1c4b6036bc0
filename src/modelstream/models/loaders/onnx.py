"""The ``onnx`` format, through onnxruntime: the primary format (no code execution).

The schema is read from the session: ONNX element types map to protocol datatypes and
symbolic or unknown dimensions become ``-1``. Sessions run on the CPU provider with
``intra_op_threads`` threads (default 1: scorers share few cores and batch instead) and
without spin-waiting, which would burn a core per idle session.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from modelstream.errors import ModelLoadError
from modelstream.models.descriptor import ModelDescriptor
from modelstream.models.loader import Arrays
from modelstream.models.loaders.common import load_error
from modelstream.models.schema import ModelSchema, TensorSpec

_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def _spec(arg: Any) -> TensorSpec:
    datatype = _TYPES.get(arg.type)
    if datatype is None:
        # e.g. skl2onnx's ZipMap emits seq(map(...)); convert with zipmap disabled.
        raise ModelLoadError(
            f"ONNX tensor {arg.name!r} has type {arg.type}, which has no protocol datatype; "
            "export plain tensors (skl2onnx: options={'zipmap': False})"
        )
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or ()))
    return TensorSpec(arg.name, datatype, shape)


class OnnxModel:
    """A loaded onnxruntime session (see :class:`~modelstream.models.loader.LoadedModel`)."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self._schema = ModelSchema(
            tuple(_spec(a) for a in session.get_inputs()),
            tuple(_spec(a) for a in session.get_outputs()),
        )
        self._output_names = [o.name for o in self._schema.outputs]

    @property
    def schema(self) -> ModelSchema:
        return self._schema

    def predict(self, inputs: Arrays) -> dict[str, npt.NDArray[Any]]:
        feed = {spec.name: inputs[spec.name] for spec in self._schema.inputs}
        outputs = self._session.run(self._output_names, feed)
        return {
            name: np.asarray(value) for name, value in zip(self._output_names, outputs, strict=True)
        }

    def close(self) -> None:
        # onnxruntime frees the session when the last reference goes.
        self._session = None


class OnnxLoader:
    """Loads ONNX bytes into onnxruntime sessions."""

    def __init__(self, intra_op_threads: int = 1) -> None:
        self._threads = intra_op_threads

    @property
    def format(self) -> str:
        return "onnx"

    def _session(self, data: bytes) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: warnings would flood scorer logs
        try:
            return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own unrelated exception types
            raise load_error("onnx", exc) from None

    def inspect(self, data: bytes, *, entrypoint: str | None = None) -> ModelSchema:
        return OnnxModel(self._session(data)).schema

    def load(self, data: bytes, descriptor: ModelDescriptor) -> OnnxModel:
        return OnnxModel(self._session(data))
