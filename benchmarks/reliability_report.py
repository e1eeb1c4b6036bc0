"""The figures of ``docs/reliability.md``, rendered from ``benchmarks/results/reliability.json``.

The fault tests write the JSON (only with ``MODELSTREAM_WRITE_RESULTS=1``, see
``tests/faults/conftest.py``); this script rewrites the block of ``docs/reliability.md``
between the ``reliability:begin`` and ``reliability:end`` markers from it, so the doc
quotes exactly what the last run measured. ``tests/test_docs_reliability.py`` fails when
the two disagree. Run it after the tests::

    .venv/bin/python benchmarks/reliability_report.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "reliability.json"
DOC = ROOT / "docs" / "reliability.md"
BEGIN = "<!-- reliability:begin: written by benchmarks/reliability_report.py from the JSON -->"
END = "<!-- reliability:end -->"
KILL = "test_a_killed_role_loses_no_acknowledged_request"
OUTAGE = "test_roles_reconnect_after_the_broker_comes_back"
OUTAGE_TITLES = {"frozen": "Broker frozen", "refused": "Broker port closed (connections refused)"}
POISON = "tests/faults/test_poison.py::test_figures"
POISON_LOAD = "test_poison_on_every_topic_under_load_is_dead_lettered_and_loses_nothing"
DISK = "tests/faults/test_disk.py::test_a_full_disk_refuses_clearly_keeps_what_was_acknowledged_and_recovers"  # noqa: E501
FUZZ = "tests/faults/test_openapi_fuzz.py::test_the_gateway_survives_schemathesis"
BACKPLANES = ("sqlite", "kafka")
ROLES = ("scorer", "rendezvous", "gateway", "featurizer", "archiver")


def _failures(failures: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(failures.items())) or "0"


def _kinds(kinds: dict[str, int]) -> str:
    """``model`` first, then the answers that are no model's (fallback, error, none)."""
    model = kinds.get("model", 0)
    other = {k: n for k, n in sorted(kinds.items()) if k != "model"}
    return f"{model}" + "".join(f" + {n} {k}" for k, n in other.items())


def _counts_row(c: dict[str, Any]) -> list[str]:
    return [
        str(c["sent"]),
        f"{c['acknowledged']} ({c['acknowledged_stream']} + {c['acknowledged_http']})",
        _failures(c["not_acknowledged"]),
        _kinds(c.get("acknowledged_kinds", {})) if "acknowledged_kinds" in c else "n/a",
        _kinds(c["answer_kinds"]),
        str(c["answered_twice"]),
        str(c.get("replied_twice", "n/a")),
        str(c["lost"]),
    ]


def _table(header: list[str], align: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(align) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


COUNT_HEADER = [
    "sent",
    "acknowledged (stream + HTTP)",
    "not acknowledged",
    "acknowledged, answered by (model + other)",
    "all answers (model + other)",
    "answered twice",
    "replied twice",
    "lost",
]
COUNT_ALIGN = ["---:", "---:", "---", "---", "---", "---:", "---:", "---:"]


def _kill(tests: dict[str, Any]) -> list[str]:
    rows, archived = [], []
    for backplane in BACKPLANES:
        for role in ROLES:
            t = tests.get(f"{KILL}[{backplane}-{role}]")
            if t is None:
                continue
            rows.append(
                [
                    backplane,
                    role,
                    *_counts_row(t),
                    f"{t['recovery_s']:.2f}",
                    f"{t['caught_up_s']:.2f}",
                ]
            )
            if "archive_rows_lost" in t:
                lost = sum(t["archive_rows_lost"].values())
                archived.append(
                    f"{backplane}: {t['archived_before_kill']} requests, {lost} rows missing"
                )
    header = ["backplane", "role killed", *COUNT_HEADER, "recovery (s)", "caught up (s)"]
    lines = ["### kill -9 of each role", ""]
    lines += _table(header, ["---", "---", *COUNT_ALIGN, "---:", "---:"], rows)
    if archived:
        lines += [
            "",
            "Archive read back after the archiver's restart: " + "; ".join(archived) + ".",
        ]
    return lines


def _outage(tests: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for kind, title in OUTAGE_TITLES.items():
        t = tests.get(f"{OUTAGE}[{kind}]")
        if t is None:
            continue
        rows = [
            ["during the outage (load on throughout)", *_counts_row(t["during"])],
            ["load started after the broker came back", *_counts_row(t["after"])],
        ]
        alive = ", ".join(t["roles_alive"])
        lines += [
            "",
            f"### {title} for {t['outage_s']:g} s (Kafka)",
            "",
            f"Injected: {t['injected']}.",
            "",
            *_table(["stretch", *COUNT_HEADER], ["---", *COUNT_ALIGN], rows),
            "",
            f"Recovery: **{t['recovery_s']} s** from the broker's return to the first answer "
            f"to a request sent after it. Role processes running at the end: {alive}.",
        ]
    return lines


def _poison(t: dict[str, Any] | None) -> list[str]:
    if t is None:
        return []
    rows = [
        [f"`{topic.split('.', 1)[1]}`", str(v["poisoned"]), str(v["dead_letter_copies"])]
        for topic, v in t["topics"].items()
    ]
    return [
        "",
        "### Poison records",
        "",
        *_table(["topic", "poison records", "dead-letter copies"], ["---", "---:", "---:"], rows),
        "",
        f"Reply topics: {t['reply_topics']}.",
    ]


def _poison_load(tests: dict[str, Any]) -> list[str]:
    found = [
        (b, tests[f"{POISON_LOAD}[{b}]"]) for b in BACKPLANES if f"{POISON_LOAD}[{b}]" in tests
    ]
    if not found:
        return []
    rows = [[backplane, *_counts_row(t)] for backplane, t in found]
    copies = [
        f"{backplane}: "
        + ", ".join(f"`{topic}` {n}" for topic, n in t["dead_letter_copies"].items())
        for backplane, t in found
    ]
    return [
        "",
        "### Poison records under load (every role a process)",
        "",
        *_table(["backplane", *COUNT_HEADER], ["---", *COUNT_ALIGN], rows),
        "",
        "Injected: " + "; ".join(f"{b}: {t['injected']}" for b, t in found) + ".",
        "",
        "Dead-letter copies of the three poison records per topic: " + "; ".join(copies) + ".",
    ]


def _disk(t: dict[str, Any] | None) -> list[str]:
    if t is None:
        return []
    recovered = "yes" if t["recovered_without_restart"] else "no"
    return [
        "",
        "### Full disk",
        "",
        f"{t['injected']}: {t['acknowledged']} records acknowledged, {t['lost']} lost, "
        f"`PRAGMA integrity_check` {t['integrity_check']}, produce worked again once space "
        f"was freed without a restart: {recovered}.",
    ]


def _fuzz(t: dict[str, Any] | None) -> list[str]:
    if t is None:
        return []
    statuses = ", ".join(f"{n:,} x {code}" for code, n in sorted(t["statuses"].items()))
    return [
        "",
        "### schemathesis",
        "",
        f"{t['requests']:,} requests over {t['operations']} operations; statuses: {statuses}; "
        f"**{t['responses_5xx']} responses of 5xx**.",
    ]


def render(results: dict[str, Any]) -> str:
    """The block between the markers (markers included) for ``results`` (the JSON)."""
    tests: dict[str, Any] = results["tests"]
    stamps = sorted(t["at"] for t in tests.values() if "at" in t)
    lines = [
        BEGIN,
        "",
        f"Machine: {results['machine']}; figures recorded {stamps[0]} to {stamps[-1]}.",
        "",
        *_kill(tests),
        *_outage(tests),
        *_poison(tests.get(POISON)),
        *_poison_load(tests),
        *_disk(tests.get(DISK)),
        *_fuzz(tests.get(FUZZ)),
        "",
        END,
    ]
    return "\n".join(lines)


def current_block(text: str) -> str:
    """The block of ``text`` between the markers (markers included)."""
    _head, rest = text.split(BEGIN, 1)
    return BEGIN + rest.split(END, 1)[0] + END


def update(doc: Path = DOC, results: Path = RESULTS) -> bool:
    """Rewrite ``doc``'s block from ``results``; whether anything changed."""
    text = doc.read_text()
    block = render(json.loads(results.read_text()))
    new = text.replace(current_block(text), block)
    if new != text:
        doc.write_text(new)
    return new != text


if __name__ == "__main__":
    changed = update()
    print(f"{DOC.relative_to(ROOT)}: {'rewritten' if changed else 'already up to date'}")
