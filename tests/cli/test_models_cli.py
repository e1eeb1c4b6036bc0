"""``modelstream models|keys|deploy|promote|rollback|apply`` end to end, in subprocesses,
on a real SQLite backplane directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODELSTREAM = str(Path(sys.executable).with_name("modelstream"))


class Cli:
    def __init__(self, tmp_path: Path) -> None:
        self.cwd = tmp_path
        self.env = {**os.environ, "MODELSTREAM_BACKPLANE": f"sqlite://{tmp_path / 'bp'}"}

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [MODELSTREAM, *args],
            check=False,
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert (done.returncode == 0) == ok, (done.stdout, done.stderr)
        return done


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    from modelstream.testing.sklearn import fit, make_dataset

    path = tmp_path / "model.joblib"
    joblib.dump(fit("logreg", make_dataset(300, 4)), path)
    return path


def test_publish_deploy_promote_rollback(cli: Cli, model_file: Path, tmp_path: Path) -> None:
    cli("models", "convert", str(model_file), "--out", "m.onnx")
    cli("keys", "generate", "--out", "keys")
    out = cli("models", "publish", "m.onnx", "--service", "svc", "--name", "gbm",
              "--sign-key", "keys/modelstream.key", "--meta", "team=risk").stdout  # fmt: skip
    assert "published svc/gbm@1" in out
    (tmp_path / "rules.json").write_text('{"threshold": 0.5}')
    cli("models", "publish", "rules.json", "--service", "svc", "--name", "rules",
        "--entrypoint", "modelstream.testing.models:ThresholdModel")  # fmt: skip

    lines = cli("models", "list", "-s", "svc", "--json").stdout.splitlines()
    assert [json.loads(line)["ref"] for line in lines] == ["gbm@1", "rules@1"]
    shown = json.loads(cli("models", "show", "svc", "gbm@1", "--json").stdout)
    assert shown["signed"] and shown["tags"] == {"team": "risk"}

    cli("deploy", "-s", "svc", "--champion", "gbm@1", "--allow-python", "--require-signature",
        "--trust-key", "keys/modelstream.pub", "--deadline-ms", "40")  # fmt: skip
    # rules@1 is unsigned and the service (still) requires signatures: refused, one line.
    error = cli("deploy", "-s", "svc", "--champion", "gbm@1", "--challenger", "rules@1", ok=False)
    assert error.stderr.count("\n") == 1 and "unsigned" in error.stderr
    cli("deploy", "-s", "svc", "--champion", "gbm@1", "--challenger", "rules@1",
        "--no-require-signature")  # fmt: skip
    assert "rules@1 (champion)" in cli("promote", "svc", "rules@1", "--reason", "better").stdout
    assert "gbm@1 (champion)" in cli("rollback", "svc").stdout


def test_errors_are_one_line(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    error = cli("models", "publish", "bad.onnx", "-s", "svc", "-n", "m", ok=False)
    assert error.stderr.startswith("error: the bytes do not load as a onnx model")
    assert error.stderr.count("\n") == 1
    error = cli("models", "show", "svc", "m@1", ok=False)
    assert "not published" in error.stderr
    error = cli("rollback", "svc", ok=False)
    assert "has no deployment" in error.stderr


def test_apply(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "rules.json").write_text('{"threshold": 0.5}')
    (tmp_path / "service.yaml").write_text(
        "service: svc\nallow_python: true\nmodels:\n"
        "  - {name: rules, file: rules.json, role: champion,"
        " entrypoint: 'modelstream.testing.models:ThresholdModel'}\n"
    )
    assert "revision 1" in cli("apply", "service.yaml").stdout
    assert "revision 1" in cli("apply", "service.yaml").stdout  # nothing changed
