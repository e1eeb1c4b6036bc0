"""The backplane CLI: the real console script in subprocesses, and Typer's CliRunner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from modelstream.backplane.records import OutRecord
from modelstream.cli.app import app

MODELSTREAM = str(Path(sys.executable).with_name("modelstream"))


def run(
    *args: str, backplane: str, stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSTREAM_")}
    env["MODELSTREAM_CONNECT_TIMEOUT_S"] = "2"
    return subprocess.run(
        [MODELSTREAM, "--backplane", backplane, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


@pytest.mark.integration
def test_produce_then_consume_round_trip(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'bp'}"
    assert run("topics", "create", "orders", "--partitions", "2", backplane=url).returncode == 0
    lines = [{"id": f"o{i}", "amount": i} for i in range(5)]
    stdin = "".join(json.dumps(line) + "\n" for line in lines)
    produced = run("produce", "orders", "--key-field", "id", backplane=url, stdin=stdin)
    assert produced.returncode == 0, produced.stderr
    assert "produced 5 records" in produced.stdout

    consumed = run(
        "consume", "orders", "--from-beginning", "--limit", "5", "--timeout", "10", backplane=url
    )
    assert consumed.returncode == 0, consumed.stderr
    records = [json.loads(line) for line in consumed.stdout.splitlines()]
    assert sorted(r["value"]["amount"] for r in records) == list(range(5))
    assert {r["key"] for r in records} == {f"o{i}" for i in range(5)}
    assert {"topic", "partition", "offset", "timestamp", "headers"} <= records[0].keys()

    described = run("topics", "describe", "orders", backplane=url)
    assert described.returncode == 0, described.stderr
    assert "5 records" in described.stdout


@pytest.mark.integration
def test_invalid_lines_are_reported_by_number_and_the_rest_produced(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'bp'}"
    stdin = '{"a": 1}\nnot json\n{"a": 3}\n{"b": 4}\n'
    result = run("produce", "t", "--key-field", "a", backplane=url, stdin=stdin)
    assert result.returncode == 1
    assert "line 2: invalid JSON" in result.stderr
    assert "line 4: no field 'a'" in result.stderr
    assert "produced 2 records" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_an_unknown_url_scheme_is_one_line(tmp_path: Path) -> None:
    result = run("topics", "list", backplane="redis://localhost")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: unknown backplane URL")


@pytest.mark.integration
def test_a_path_under_a_file_is_one_line(tmp_path: Path) -> None:
    # Works as root too: nobody can create a directory below a regular file.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("topics", "list", backplane=f"sqlite://{blocker / 'bp'}")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert result.stderr.strip().count("\n") == 0


@pytest.mark.integration
@pytest.mark.kafka
def test_a_broker_that_does_not_answer_is_one_line() -> None:
    from modelstream.testing.broker import free_port

    started = time.monotonic()
    result = run("topics", "list", backplane=f"kafka://127.0.0.1:{free_port()}")
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert result.stderr.startswith("error: kafka broker")
    assert "did not answer within 2s" in result.stderr
    assert "check the address and that the broker runs" in result.stderr  # the fix
    assert result.stderr.strip().count("\n") == 0
    # The connect timeout (2 s, set by run()) plus the interpreter's start-up: no hang.
    assert elapsed < 2 + 8, elapsed


def test_topics_commands_in_process() -> None:
    runner = CliRunner()
    created = runner.invoke(app, ["--backplane", "memory://", "topics", "create", "x", "-p", "3"])
    assert created.exit_code == 0, created.output
    assert "3 partitions" in created.output
    missing = runner.invoke(app, ["--backplane", "memory://", "topics", "delete", "nope"])
    assert missing.exit_code == 1


def _cells(output: str, first: str) -> list[str]:
    """The cells of the table row of ``output`` whose first cell is ``first``."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃").split("│")]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{output}")


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., Result]:
    """Run the CLI in-process on a fresh SQLite backplane; fail on a non-zero exit."""
    runner, url = CliRunner(), f"sqlite://{tmp_path / 'bp'}"

    def invoke(*args: str, stdin: str = "") -> Result:
        result = runner.invoke(app, ["--backplane", url, *args], input=stdin)
        assert result.exit_code == 0, result.output
        return result

    return invoke


def test_topics_list_shows_each_topic_and_delete_removes_it(cli: Callable[..., Result]) -> None:
    cli("topics", "create", "orders", "-p", "3")
    cli("topics", "create", "models", "-p", "1", "--compacted")
    listed = cli("topics", "list").output
    assert "topics (2)" in listed
    assert _cells(listed, "orders") == ["orders", "3", ""]
    assert _cells(listed, "models") == ["models", "1", "yes"]

    assert cli("topics", "delete", "orders").output.strip() == "deleted topic orders"
    listed = cli("topics", "list").output
    assert "topics (1)" in listed and "orders" not in listed


def test_a_group_consume_shows_in_describe_and_the_next_one_resumes(
    cli: Callable[..., Result],
) -> None:
    cli("topics", "create", "events", "-p", "1")
    stdin = "".join(json.dumps({"n": i}) + "\n" for i in range(6))
    assert "produced 6 records" in cli("produce", "events", stdin=stdin).output

    first = cli("consume", "events", "-g", "readers", "--from-beginning", "-n", "4", "-t", "5")
    assert [json.loads(line)["offset"] for line in first.output.splitlines()] == [0, 1, 2, 3]
    described = cli("topics", "describe", "events").output
    assert "events: 1 partitions, 6 records" in described
    # group, members (none left), committed offsets, lag
    assert _cells(described, "readers") == ["readers", "0", "0:4", "2"]

    second = cli("consume", "events", "-g", "readers", "-t", "0.5")
    lines = [json.loads(line) for line in second.output.splitlines()]
    assert [(r["offset"], r["value"]) for r in lines] == [(4, {"n": 4}), (5, {"n": 5})]
    assert _cells(cli("topics", "describe", "events").output, "readers")[2:] == ["0:6", "0"]


@pytest.mark.integration
@pytest.mark.kafka
def test_a_broker_gone_mid_consume_is_an_error_not_a_drained_topic() -> None:
    from modelstream.backplane.factory import open_backplane
    from modelstream.testing.broker import TansuBroker

    with TansuBroker.start() as broker:
        backplane = open_backplane(broker.url)
        # One partition: the test reads n=1 first, and order holds within a partition only.
        backplane.create_topic("gone", 1)
        backplane.produce("gone", [OutRecord(b'{"n": 1}'), OutRecord(b'{"n": 2}')])
        backplane.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSTREAM_")}
        env["MODELSTREAM_CONNECT_TIMEOUT_S"] = "1"
        command = [MODELSTREAM, "consume", "gone", "--from-beginning", "-t", "1"]
        with subprocess.Popen(
            [*command, "--backplane", broker.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        ) as consume:
            assert consume.stdout is not None and consume.stderr is not None
            assert json.loads(consume.stdout.readline())["value"] == {"n": 1}
            broker.process.kill()  # mid-stream: connected, records read, then nothing
            killed = time.monotonic()
            consume.wait(timeout=60)
            elapsed = time.monotonic() - killed
            stderr = consume.stderr.read()
    assert consume.returncode == 1
    assert stderr.startswith("error: kafka broker did not answer")
    assert "check that it runs" in stderr
    assert stderr.strip().count("\n") == 0
    assert elapsed < 1 + 1 + 5, elapsed  # --timeout, then the connect timeout, plus slack
