"""``modelstream serve`` as a real process: serves, answers, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from modelstream.backplane.factory import open_backplane
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.settings import Settings
from modelstream.testing.sklearn import onnx_classifier

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_over_http_and_stops_on_sigterm(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}"
    settings = Settings(backplane=url)
    model, data = onnx_classifier("logreg")
    backplane = open_backplane(url, settings)
    try:
        registry = Registry(backplane, settings)
        registry.publish("churn", "lr", model, format="onnx")
        registry.deploy("churn", ModelRef("lr", 1), deadline_ms=1000)
    finally:
        backplane.close()

    port = free_port()
    command = [str(Path(sys.executable).parent / "modelstream"), "--backplane", url]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*command, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + 45
            while True:
                assert process.poll() is None, process.communicate()[0].decode()
                try:
                    if client.get("/v2/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "modelstream serve did not become ready"
                time.sleep(0.2)
            rows = data.x[:3]
            body = {
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "FP32",
                        "shape": [3, 4],
                        "data": rows.ravel().tolist(),
                    }
                ]
            }
            response = client.post("/v2/models/churn/infer", json=body)
            assert response.status_code == 200, response.text
            session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
            label = session.run(["label"], {"input": rows.astype(np.float32)})[0]
            got = {o["name"]: o["data"] for o in response.json()["outputs"]}
            assert got["label"] == label.tolist()
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode()
    assert process.returncode == 0, output
    assert "Traceback" not in output
