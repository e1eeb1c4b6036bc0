"""``docs/reliability.md`` quotes ``benchmarks/results/reliability.json`` exactly.

The block between the ``reliability:begin`` and ``reliability:end`` markers is what
``benchmarks/reliability_report.py`` renders from the JSON; a hand edit of a figure, or
a JSON refreshed without re-rendering the doc, fails here with the command that fixes it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _report() -> ModuleType:
    path = ROOT / "benchmarks" / "reliability_report.py"
    spec = importlib.util.spec_from_file_location("reliability_report", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reliability_doc_quotes_the_results_file() -> None:
    report = _report()
    doc = (ROOT / "docs" / "reliability.md").read_text()
    results = json.loads((ROOT / "benchmarks" / "results" / "reliability.json").read_text())
    assert report.current_block(doc) == report.render(results), (
        "docs/reliability.md is stale: run `python benchmarks/reliability_report.py`"
    )


def test_every_kill_and_outage_figure_in_the_results_is_in_the_doc() -> None:
    """The block is no empty shell: each recorded kill and the outage have their row."""
    report = _report()
    block = report.current_block((ROOT / "docs" / "reliability.md").read_text())
    results = json.loads((ROOT / "benchmarks" / "results" / "reliability.json").read_text())
    kills = [k for k in results["tests"] if k.startswith(report.KILL)]
    assert len(kills) == 10
    for test_id in kills:
        backplane, role = test_id.split("[")[1].rstrip("]").split("-")
        assert f"| {backplane} | {role} | {results['tests'][test_id]['sent']} |" in block
    for kind, title in report.OUTAGE_TITLES.items():
        outage = results["tests"][f"{report.OUTAGE}[{kind}]"]
        assert f"### {title} for {outage['outage_s']:g} s (Kafka)" in block
        assert f"**{outage['recovery_s']} s**" in block
