"""MLServer 1.7 as a peer for ``benchmarks/peers.py``: install, configure, start, stop.

MLServer 1.7 ships no ONNX runtime, so the model is served by a small custom runtime
(an ``MLModel`` subclass around ``onnxruntime.InferenceSession``) that this module writes
next to ``model.onnx`` with its ``model-settings.json``. The session options are those of
modelstream's ONNX loader (one intra-op thread, one inter-op thread, no spinning), so both
servers run the model the same way. MLServer lives in its own virtual environment
(``.bench/mlserver-1.7`` under the repository, gitignored), installed on first use.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

VERSION = "1.7"
VENV = Path(__file__).resolve().parent.parent / ".bench" / f"mlserver-{VERSION}"
# The newest uvloop (0.23) raises from get_event_loop() without a current loop, which
# kills MLServer 1.7's parallel inference worker at start (mlserver/parallel/worker.py,
# _ignore_signals): an older uvloop (0.21) is pinned so that its default settings run.
PACKAGES = (f"mlserver=={VERSION}.*", "uvloop<0.22", "onnxruntime", "numpy")

RUNTIME = '''"""onnxruntime behind MLServer's custom-runtime API (by benchmarks/peers.py)."""

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxRuntime(MLModel):
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = await get_model_uri(self._settings)
        self._session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feed = {
            i.name: NumpyCodec.decode_input(i).astype(np.float32, copy=False)
            for i in payload.inputs
        }
        values = self._session.run(None, feed)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(n, v) for n, v in zip(self._outputs, values)],
        )
'''


def _installed_version(venv: Path) -> str | None:
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import mlserver, onnxruntime; print(mlserver.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def ensure_mlserver(venv: Path = VENV) -> str:
    """MLServer 1.7 with onnxruntime in ``venv`` (created if needed); its exact version."""
    stamp = venv / "benchmark-packages.txt"
    version = _installed_version(venv)
    installed = stamp.read_text() if stamp.exists() else ""
    if version is not None and version.startswith(f"{VERSION}.") and installed == str(PACKAGES):
        return version
    print(f"installing {' '.join(PACKAGES)} into {venv} (about a minute)", flush=True)
    if not (venv / "bin" / "pip").exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log = venv.parent / f"mlserver-{VERSION}-install.log"
    with log.open("wb") as out:
        done = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", *PACKAGES],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    version = _installed_version(venv)
    if done.returncode != 0 or version is None:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"installing MLServer failed (see {log}):\n{tail}")
    stamp.write_text(str(PACKAGES))
    return version


def write_model_dir(root: Path, name: str, model: bytes, settings: dict[str, Any]) -> Path:
    """An MLServer folder: ``settings.json`` and ``<name>/`` with the model and runtime."""
    model_dir = root / name
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "model.onnx").write_bytes(model)
    (model_dir / "onnx_runtime.py").write_text(RUNTIME)
    model_settings = {
        "name": name,
        "implementation": "onnx_runtime.OnnxRuntime",
        "parameters": {"uri": "./model.onnx"},
    }
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    (root / "settings.json").write_text(json.dumps(settings, indent=2))
    return root


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        children = [c for c, p in parents.items() if p == parent]
        found.extend(children)
        todo.extend(children)
    return found


class MLServer:
    """``mlserver start`` on a folder written by :func:`write_model_dir`, in a subprocess."""

    def __init__(self, folder: Path, port: int, log: Path, venv: Path = VENV) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self._log = log.open("wb")
        self._venv = venv
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVER")}
        self.proc = subprocess.Popen(
            [str(venv / "bin" / "mlserver"), "start", str(folder)],
            cwd=folder,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, name: str, timeout: float = 120.0) -> None:
        give_up = time.monotonic() + timeout
        ready = f"{self.url}/v2/models/{name}/ready"
        while time.monotonic() < give_up:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlserver exited with {self.proc.returncode}")
            with contextlib.suppress(OSError), urllib.request.urlopen(ready, timeout=1) as r:
                if r.status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError("mlserver did not become ready")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to it and to its worker processes, each by pid."""
        children = _descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in children:  # workers left behind, if any: still ours only if in the venv
            with contextlib.suppress(OSError):
                if str(self._venv).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
        self._log.close()
