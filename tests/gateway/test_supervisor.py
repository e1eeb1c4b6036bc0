"""``modelstream serve --processes``: roles as supervised children, through the real CLI.

One test runs the real thing on SQLite: the parent starts rendezvous, scorer and gateway
children, answers are the model's own, a scorer killed with SIGKILL is started again and
answers resume, and SIGTERM to the parent ends every child.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from modelstream.backplane.factory import open_backplane
from modelstream.errors import ConfigurationError
from modelstream.gateway.loop import LoopConfig
from modelstream.gateway.supervisor import Supervisor, serve_roles
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.settings import Settings
from modelstream.testing.broker import free_port
from modelstream.testing.sklearn import onnx_classifier


def _children(pid: int) -> dict[int, str]:
    """Live child processes of ``pid`` and their command lines (Linux /proc)."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if ppid == pid and state != "Z":
                found[int(entry.name)] = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                )
        except (OSError, IndexError):
            continue
    return found


def _wait(what: str, condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _role(command: str) -> str:
    """The role a child runs ("" while it has forked but not yet started the command)."""
    _, run, rest = command.partition(" run ")
    return rest.split(maxsplit=1)[0] if run else ""


@pytest.mark.integration
def test_roles_run_as_children_restart_after_a_crash_and_stop_together(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'bp'}"
    settings = Settings(backplane=url)
    backplane = open_backplane(url, settings)
    model, data = onnx_classifier("logreg", seed=0)
    registry = Registry(backplane, settings)
    registry.publish("fraud", "lr", model, format="onnx")
    registry.deploy("fraud", ModelRef("lr", 1), deadline_ms=5000)
    backplane.close()
    expected = ort.InferenceSession(model).run(None, {"input": data.x[:1]})[0]

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSTREAM_")}
    env["MODELSTREAM_SESSION_TIMEOUT_MS"] = "3000"  # a killed scorer leaves its group soon
    command = [sys.executable, "-m", "modelstream.cli", "--backplane", url, "serve"]
    options = ["-s", "fraud", "--processes", "--no-monitor", "--no-archive", "-p", str(port)]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        parent = subprocess.Popen([*command, *options], env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4]}]}
    body["inputs"][0]["data"] = [float(v) for v in data.x[0]]

    def answered() -> bool:
        try:
            reply = httpx.post(f"{base}/v2/models/fraud/infer", json=body, timeout=10)
        except httpx.TransportError:
            return False
        return reply.status_code == 200 and reply.json()["model_version"] == "lr@1"

    try:
        _wait("the gateway child to answer", answered, 120)
        roles = {pid: _role(cmd) for pid, cmd in _children(parent.pid).items()}
        assert sorted(roles.values()) == ["gateway", "rendezvous", "scorer"]
        reply = httpx.post(f"{base}/v2/models/fraud/infer", json=body, timeout=10).json()
        label = next(o for o in reply["outputs"] if o["name"] == "label")
        assert label["data"] == [int(v) for v in np.ravel(expected)]
        assert reply["parameters"]["model"] == "lr@1"

        scorer = next(pid for pid, role in roles.items() if role == "scorer")
        os.kill(scorer, signal.SIGKILL)

        def a_new_scorer() -> bool:
            now = {_role(cmd): pid for pid, cmd in _children(parent.pid).items()}
            return now.get("scorer", scorer) != scorer

        _wait("the supervisor to start the scorer again", a_new_scorer, 30)
        _wait("answers by the model after the restart", answered, 60)
        assert parent.poll() is None
    finally:
        children = list(_children(parent.pid))
        parent.send_signal(signal.SIGTERM)
        try:
            parent.wait(60)
        except subprocess.TimeoutExpired:
            parent.kill()
            raise
    stderr = log.read_text()
    assert parent.returncode == 0, stderr[-2000:]
    assert "scorer-0 exited with code -9" in stderr
    assert "Traceback" not in stderr
    assert not any(Path(f"/proc/{pid}").exists() for pid in children), "a child outlived serve"


def test_the_processes_are_what_one_serve_process_runs() -> None:
    loop = LoopConfig(train="pkg.train:fit", train_every_labels=50, auto_promote=True)
    roles = serve_roles(
        ["fraud"],
        host="0.0.0.0",
        port=8080,
        featurizer=True,
        monitor=True,
        archiver=False,
        loop=loop,
        scorer_processes=2,
    )
    names = [r.name for r in roles]
    assert names == [
        "rendezvous",
        "scorer-0",
        "scorer-1",
        "featurizer",
        "monitor",
        "trainer",
        "gateway",
    ]
    assert [r.name for r in roles if not r.waits] == ["gateway"]  # it starts last
    gateway = roles[-1].args
    assert gateway == (
        "run",
        "gateway",
        "--service",
        "fraud",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
    )
    trainer = roles[-2].args
    assert trainer[:4] == ("run", "trainer", "--service", "fraud")
    assert "pkg.train:fit" in trainer and "--auto-promote" in trainer
    assert trainer[trainer.index("--train-every-labels") + 1] == "50"


def test_a_role_that_keeps_failing_at_start_stops_serve_with_a_clear_error(
    tmp_path: Path,
) -> None:
    # Service "nowhere" is not deployed: every child exits with an error at once.
    roles = serve_roles(
        ["nowhere"],
        host=None,
        port=None,
        featurizer=False,
        monitor=False,
        archiver=False,
        loop=LoopConfig(train_every_labels=None),
    )
    supervisor = Supervisor(
        f"sqlite://{tmp_path}", roles[:1], backoff_s=0.05, max_quick_failures=2, poll_s=0.05
    )
    with pytest.raises(ConfigurationError, match="rendezvous exited 2 times") as caught:
        supervisor.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            supervisor.check()
            time.sleep(0.05)
    assert "fix that" in str(caught.value)
    assert supervisor.restarts() == {"rendezvous": 1}


def test_memory_backplane_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigurationError, match=r"sqlite://DIR or kafka://"):
        Supervisor("memory://", [])
