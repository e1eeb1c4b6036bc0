"""What reading a topic's offsets costs on a Kafka broker that holds many consumer groups.

A long-running broker collects groups: every service has its scorers', rendezvous',
featurizer's and archiver's, and every ``consume`` or test adds more. Starts a tansu
broker on loopback, commits one group (``mine``) on topic ``t`` and ``--groups`` other
groups on another topic, then times, best of ``--rounds``:

* ``partitions("t")``: the offsets alone (what the roles read when they start);
* ``group_offsets("mine", "t")``: one group's commits (the scorer pool's lanes);
* ``describe_topic("t")``: offsets, and every group with commits on ``t`` with its lag and
  members (``modelstream topics describe``).

Prints a table and writes ``benchmarks/results/groups.json``. Bounded: under a minute.

    .venv/bin/python benchmarks/groups.py [--groups 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.records import OutRecord, TopicPartition
from modelstream.settings import Settings
from modelstream.testing.broker import TansuBroker

RESULTS = Path(__file__).parent / "results" / "groups.json"


def best_ms(call: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return round(min(times) * 1000, 1)


def measure(groups: int, rounds: int) -> dict[str, Any]:
    with TansuBroker.start() as broker:
        bp = open_backplane(broker.url, Settings(backplane=broker.url))
        try:
            for topic in ("t", "other"):
                bp.create_topic(topic, 2)
                bp.produce(topic, [OutRecord(b"x", partition=0)])
            bp.set_group_offsets("mine", {TopicPartition("t", 0): 1})
            for i in range(groups):
                bp.set_group_offsets(f"other-{i}", {TopicPartition("other", 0): 1})
            described = bp.describe_topic("t")
            if [g.group for g in described.groups] != ["mine"]:
                raise RuntimeError(f"describe_topic found {described.groups}, not 'mine' alone")
            return {
                "partitions_ms": best_ms(lambda: bp.partitions("t"), rounds),
                "group_offsets_ms": best_ms(lambda: bp.group_offsets("mine", "t"), rounds),
                "describe_topic_ms": best_ms(lambda: bp.describe_topic("t"), rounds),
            }
        finally:
            bp.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, default=200, help="groups on the other topic")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    figures = measure(args.groups, args.rounds)
    table = Table(title=f"offsets on a broker with {args.groups} other groups (best ms)")
    for name in figures:
        table.add_column(name.removesuffix("_ms"), justify="right")
    table.add_row(*(f"{v:,.1f}" for v in figures.values()))
    Console().print(table)
    report = {
        "benchmark": "groups",
        "at": int(time.time() * 1000),
        "machine": {"python": platform.python_version()},
        "setup": {"broker": "tansu", "other_groups": args.groups, "rounds": args.rounds},
        "results": figures,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
