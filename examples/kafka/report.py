"""The example's summary: what was sent, what was answered, who owned which partitions.

Definitions (the same the test checks):

* *acknowledged*: an HTTP request the gateway answered with 200, or a request record
  whose produce call returned;
* *answered*: the service's ``results`` topic holds an answer for the request id (late
  notes, header ``x-modelstream-late``, are not answers); *answered twice*: more than one;
* *lost*: acknowledged and not answered;
* *ownership*: per scorer process, the partitions of ``requests`` it wrote scores for,
  before and after the kill (the header ``x-modelstream-scorer`` names the scorer
  instance, whose id holds its pid).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from load import Sent
from rich.console import Console
from rich.table import Table
from tally import Tally, scorer_pid

from modelstream.archive.reader import ArchiveReader
from modelstream.testing.processes import Fleet


@dataclass
class Run:
    """Everything a finished run leaves to summarize."""

    service: str
    broker: str
    partitions: int
    fleet: Fleet
    tally: Tally
    http: Sent
    kafka: Sent
    probes: Sent
    killed_at: int | None
    killed: str
    groups: dict[str, dict[str, int]]
    died_unasked: list[str]
    workdir: Path


def _answered_by(tally: Tally, ids: set[str]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for rid in ids:
        first = tally.first.get(rid)
        if first is None:
            continue
        counts[first.ref or ("fallback" if first.fallback else f"none: {first.error}")] += 1
    return dict(counts.most_common())


def _ownership(run: Run) -> dict[str, dict[str, dict[str, list[int]]]]:
    """model -> phase -> process name -> partitions it wrote scores for."""
    names = run.fleet.by_pid()
    out: dict[str, dict[str, dict[str, set[int]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(set))
    )
    for per_model in run.tally.scores.values():
        for model, seen in per_model.items():
            for s in seen:
                pid = scorer_pid(s.scorer)
                name = names.get(pid, s.scorer) if pid is not None else s.scorer
                phase = "all"
                if run.killed_at is not None:
                    phase = "before kill" if s.scored_at < run.killed_at else "after kill"
                out[model][phase][name].add(s.partition)
    return {
        m: {ph: {n: sorted(p) for n, p in sorted(procs.items())} for ph, procs in phases.items()}
        for m, phases in sorted(out.items())
    }


def last_snapshot(fleet: Fleet) -> dict[str, Any]:
    """The last complete snapshot the monitor process printed (one JSON object a line)."""
    try:
        lines = fleet.by_name("monitor").log_path.read_text(errors="replace").splitlines()
    except (KeyError, OSError):
        return {}
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                snap: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line still being written
            return snap
    return {}


def _monitor(run: Run) -> dict[str, Any]:
    """The monitor's last snapshot, cut to what the summary shows."""
    snap = last_snapshot(run.fleet)
    if snap:
        models = {
            m["model"]: {k: m.get(k) for k in ("role", "scored", "errors", "labelled", "quality")}
            for m in snap.get("models", [])
        }
        keep = ("records", "results", "deadline_misses")
        return {**{k: snap.get(k) for k in keep}, "models": models}
    return {}


def _archive(run: Run) -> dict[str, int]:
    try:
        rows = ArchiveReader(run.workdir / "archive").summary(run.service)
    except Exception as exc:  # the summary must not fail on a half-written archive
        return {"error": str(exc)}  # type: ignore[dict-item]
    return {str(k): int(v) for k, v in rows.groupby("kind")["rows"].sum().items()}


def summarize(run: Run) -> dict[str, Any]:
    """The summary as plain JSON-ready data; ``ok`` says whether the run kept its promises."""
    t = run.tally
    acked = run.http.acknowledged | run.kafka.acknowledged
    answered = {r for r in acked if t.answers[r]}
    sent = set(run.http.ids) | set(run.kafka.ids)
    twice = sorted(r for r in sent | run.probes.acknowledged if t.answers[r] > 1)
    lost = sorted(acked - answered)
    missing_scores = {
        model: sorted(r for r in acked if model not in t.scores.get(r, {}))
        for model in sorted({m for per in t.scores.values() for m in per})
    }
    summary: dict[str, Any] = {
        "service": run.service,
        "broker": run.broker,
        "partitions": run.partitions,
        "sent": {"http": len(run.http.ids), "kafka": len(run.kafka.ids)},
        "acknowledged": {"http": len(run.http.acknowledged), "kafka": len(run.kafka.acknowledged)},
        "failures": {"http": dict(run.http.failures), "kafka": dict(run.kafka.failures)},
        "answered": len(answered),
        "answered_twice": len(twice),
        "lost": len(lost),
        "lost_ids": lost[:20],
        "twice_ids": twice[:20],
        "kafka_replies": sum(1 for r in run.kafka.acknowledged if t.replies[r]),
        "late_notes": t.late_notes,
        "answered_by": _answered_by(t, answered),
        "without_score": {m: len(ids) for m, ids in missing_scores.items()},
        "ownership": _ownership(run),
        "groups": run.groups,
        "killed": None
        if run.killed_at is None
        else {
            "process": run.killed,
            "pid": run.fleet.by_name(run.killed).pid,
            "at_ms": run.killed_at,
        },
        "processes": {
            c.name: {"pid": c.pid, "exit": c.process.poll()} for c in run.fleet.children.values()
        },
        "died_unasked": run.died_unasked,
        "monitor": _monitor(run),
        "trainer": dict(Counter(e for e, _, _ in t.trainer_events)),
        "trainer_last": t.trainer_events[-1][1] if t.trainer_events else None,
        "archive": _archive(run),
        "acknowledged_ids": {
            "http": sorted(run.http.acknowledged),
            "kafka": sorted(run.kafka.acknowledged),
        },
        "sent_at": {**run.http.sent_at, **run.kafka.sent_at},
        "workdir": str(run.workdir),
    }
    summary["ok"] = not lost and not twice and not run.died_unasked
    return summary


def print_summary(s: dict[str, Any]) -> None:
    console = Console()
    table = Table("", "http", "kafka", title=f"{s['service']} on {s['broker']}")
    table.add_row("sent", str(s["sent"]["http"]), str(s["sent"]["kafka"]))
    table.add_row("acknowledged", str(s["acknowledged"]["http"]), str(s["acknowledged"]["kafka"]))
    table.add_row("not acknowledged", str(s["failures"]["http"]), str(s["failures"]["kafka"]))
    console.print(table)
    console.print(
        f"answered {s['answered']}, answered twice {s['answered_twice']}, lost {s['lost']}; "
        f"replies on the reply topic {s['kafka_replies']}; late notes {s['late_notes']}"
    )
    console.print(
        f"answered by: {s['answered_by']}; requests without a score: {s['without_score']}"
    )
    if s["killed"]:
        console.print(f"killed {s['killed']['process']} (pid {s['killed']['pid']}) with SIGKILL")
    owners = Table(
        "model", "phase", "process", "partitions", title="partitions scored, per process"
    )
    for model, phases in s["ownership"].items():
        for phase, procs in phases.items():
            for name, parts in procs.items():
                owners.add_row(model, phase, name, ", ".join(map(str, parts)))
    console.print(owners)
    console.print(f"groups on requests (members, lag): {s['groups']}")
    console.print(f"monitor: {s['monitor']}")
    console.print(f"archive rows: {s['archive']}")
    console.print(f"trainer cycles: {s['trainer']} (last: {s['trainer_last']})")
    console.print(f"exit codes: { {n: p['exit'] for n, p in s['processes'].items()} }")
    verdict = "OK" if s["ok"] else f"NOT OK (died unasked: {s['died_unasked']})"
    console.print(f"[bold]{verdict}[/bold]")


def write_json(summary: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1, sort_keys=True))
