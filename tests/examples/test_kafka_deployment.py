"""``examples/kafka/run.py`` end to end: every role a process of its own on a real broker.

The example runs against the suite's tansu broker with a service of its own, drives load
through HTTP and straight onto Kafka, and SIGKILLs one of the two scorer processes of
the champion mid-load. This test then reads the service's topics back from the broker
itself (not through the example's own counts) and checks what an operator would:

* every acknowledged request (HTTP 200, or a produce call that returned) has exactly one
  answer on ``results`` (late-answer notes, header ``x-modelstream-late``, aside);
* the killed scorer owned partitions before the kill, and afterwards the survivor scored
  every partition: every champion score written after the kill names the survivor
  (header ``x-modelstream-scorer``), and every request sent after the kill has one;
* the champion's consumer group has no lag left.

Every wait is bounded, and the example's whole process group is killed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import Record
from modelstream.settings import Settings
from modelstream.wire.results import decode_result
from modelstream.wire.scores import decode_score
from modelstream.wire.topics import ServiceTopics

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "kafka" / "run.py"
RUN_TIMEOUT_S = 150
PARTITIONS = 4


def run_example(bootstrap: str, service: str, workdir: Path) -> tuple[dict[str, Any], str]:
    """Run the example to its end (bounded); always kill its whole process group after."""
    summary_path = workdir / "summary.json"
    argv = [
        sys.executable, str(EXAMPLE),
        "--bootstrap", bootstrap, "--service", service, "--partitions", str(PARTITIONS),
        # The trainer is left out here: one fewer process importing pandas and sklearn on
        # a busy CI machine; it plays no part in what this test checks.
        "--seconds", "8", "--kill-scorer-after", "3", "--no-trainer",
        "--workdir", str(workdir / "run"), "--summary", str(summary_path),
    ]  # fmt: skip
    # A session of its own: the example's children share its process group, so one
    # killpg ends them all, whatever state the example is left in.
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
        pytest.fail(f"the example did not finish in {RUN_TIMEOUT_S} s:\n{out.decode()[-3000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    return json.loads(summary_path.read_text()), text


def read_all(backplane: Backplane, topics: list[str], idle_s: float = 3.0) -> list[Record]:
    """Every record of ``topics``: read until nothing arrives for ``idle_s`` (bounded).

    The example has stopped producing; the broker's high watermark is not trusted for
    the end (tansu reports a wrong one for multi-record batches), idleness is.
    """
    consumer = backplane.consumer(topics, start="earliest")
    records: list[Record] = []
    try:
        deadline = time.monotonic() + 60
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < idle_s:
            batch = consumer.poll(max_records=5000, timeout=0.5)
            if batch:
                records.extend(batch)
                quiet_since = time.monotonic()
    finally:
        consumer.close()
    return records


def scorer_pid(record: Record) -> int:
    """The pid inside the ``x-modelstream-scorer`` header (``host-pid-suffix``)."""
    header = record.header("x-modelstream-scorer")
    assert header is not None, "scores must name the scorer instance that wrote them"
    return int(header.decode().rsplit("-", 2)[1])


def test_a_killed_scorer_process_loses_no_request(kafka_broker: str, tmp_path: Path) -> None:
    service = f"kx-{uuid.uuid4().hex[:6]}"
    summary, output = run_example(kafka_broker, service, tmp_path)
    topics = ServiceTopics(service)
    acked = set(summary["acknowledged_ids"]["http"]) | set(summary["acknowledged_ids"]["kafka"])
    assert len(summary["acknowledged_ids"]["http"]) > 50, output[-2000:]
    assert len(summary["acknowledged_ids"]["kafka"]) > 100, output[-2000:]
    killed = summary["killed"]
    kill_ms: int = killed["at_ms"]
    processes = summary["processes"]
    survivor = processes["scorer-lr-1"]["pid"]
    assert processes["scorer-lr-2"]["exit"] == -signal.SIGKILL, output[-2500:]
    assert summary["died_unasked"] == [], output[-2500:]

    settings = Settings(backplane=f"kafka://{kafka_broker}", session_timeout_ms=3000)
    backplane = open_backplane(settings.backplane, settings)
    try:
        records = read_all(backplane, [topics.results, topics.scores])
        groups = {g.group: g for g in backplane.describe_topic(topics.requests).groups}
    finally:
        backplane.close()

    answers: Counter[str] = Counter()
    for r in records:
        if r.topic == topics.results and r.header("x-modelstream-late") is None:
            answers[decode_result(r.value).request_id] += 1
    tail = output[-2500:]  # the example's summary, for whoever reads a failure
    assert sorted(acked - set(answers)) == [], f"acknowledged, never answered\n{tail}"
    assert {rid: n for rid, n in answers.items() if n > 1} == {}, f"answered twice\n{tail}"

    before: dict[int, set[int]] = defaultdict(set)
    after: dict[int, set[int]] = defaultdict(set)
    scored_after: set[str] = set()
    for r in records:
        if r.topic != topics.scores:
            continue
        score = decode_score(r.value)
        if score.model != "lr":
            continue
        pid = scorer_pid(r)
        if score.scored_at < kill_ms:
            before[pid].add(r.partition)
        else:
            after[pid].add(r.partition)
            scored_after.add(score.request_id)
    assert before[killed["pid"]], f"the killed scorer owned no partition: proves nothing\n{tail}"
    assert set(after) == {survivor}, f"after the kill, scores from the survivor only\n{tail}"
    assert after[survivor] == set(range(PARTITIONS)), f"survivor took all partitions\n{tail}"
    sent_after = {rid for rid in acked if summary["sent_at"][rid] >= kill_ms}
    assert sent_after, "load went on after the kill"
    assert sorted(sent_after - scored_after) == [], f"sent after the kill, never scored\n{tail}"
    assert groups[f"{service}.scorer.lr"].total_lag == 0, tail
