"""Score a CSV file with the deployed model of a service, in a Bytewax dataflow.

    python examples/bytewax/score_csv.py IN.csv OUT.jsonl --service fraud \\
        --backplane sqlite://./.modelstream

Each CSV row (a header names the columns; an ``id`` column is kept as the row's id, the
other columns are the features in training order) comes out as one JSON line: the row,
``prediction``, ``probability_<class>``, ``model`` and ``model_version``. The model is
the service's deployed champion, followed live: deploy a new version while a long file
(or, with a Kafka source instead of the CSV one, an endless stream) is being scored and
the rows after the swap carry the new version. See docs/embedding.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.connectors.files import CSVSource, FileSink
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

from modelstream.adapters.bytewax import score_stream
from modelstream.scoring.embedded import EmbeddedScorer
from modelstream.settings import Settings


def build_flow(
    csv: Path,
    out: Path,
    *,
    service: str,
    backplane: str,
    settings: Settings | None = None,
    write_scores: bool = False,
) -> Dataflow:
    """The dataflow: CSV rows -> scored by the deployed champion -> JSON lines."""

    def make_scorer() -> EmbeddedScorer:  # called on the first batch of each worker
        return EmbeddedScorer(
            service, backplane=backplane, settings=settings, write_scores=write_scores
        )

    flow = Dataflow("modelstream-score-csv")
    rows = op.input("csv", flow, CSVSource(csv, batch_size=256))
    scored = score_stream("score", rows, make_scorer)
    # FileSink routes (key, line) pairs; one file, so one key.
    lines = op.map("json", scored, lambda row: ("scored", json.dumps(row, default=_plain)))
    op.output("out", lines, FileSink(out))
    return flow


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--service", required=True)
    parser.add_argument("--backplane", default="sqlite://./.modelstream")
    parser.add_argument(
        "--write-scores", action="store_true", help="also write to <service>.scores"
    )
    args = parser.parse_args()
    run_main(
        build_flow(
            args.csv,
            args.out,
            service=args.service,
            backplane=args.backplane,
            write_scores=args.write_scores,
        )
    )


if __name__ == "__main__":
    main()
