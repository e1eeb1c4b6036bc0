"""``modelstream train``: one training cycle of a service, or the trainer role.

Without ``--every``/``--every-labels`` it runs one cycle (read the archive window, call
the training function, convert, evaluate against the champion, publish) and prints what
happened. With a trigger it runs the trainer role until Ctrl-C. The options translate
into a :class:`~modelstream.training.config.TrainerConfig`; see
:mod:`modelstream.training` for the contract of the training function.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelstream.cli.context import BackplaneOption, backplane_of, settings_of
from modelstream.cli.errors import reported
from modelstream.errors import ConfigurationError
from modelstream.training.config import TrainerConfig

if TYPE_CHECKING:  # pandas: imported only when a cycle runs
    from modelstream.training.cycle import CycleResult

_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_window(text: str | None) -> int | None:
    """``30m``, ``12h``, ``7d``, ``2w`` or plain seconds, as milliseconds."""
    if text is None:
        return None
    match = _DURATION.match(text)
    if not match:
        raise ConfigurationError(f"--window {text!r} must look like 30m, 12h, 7d or 2w")
    return int(float(match[1]) * _UNITS[match[2] or "s"])


def summary(result: CycleResult) -> dict[str, Any]:
    """A JSON-ready view of a cycle."""
    e = result.evaluation
    return {
        "published": None if result.published is None else str(result.published.ref),
        "reason": result.reason,
        "rows": result.rows,
        "parent": None if result.parent is None else str(result.parent),
        "deployed_as_challenger": result.deployed,
        "metrics": dict(e.metrics) if e is not None else {},
        "timings_ms": dict(result.timings_ms),
    }


@reported
def train_command(
    ctx: typer.Context,
    service: str = typer.Option(..., "--service", "-s", help="Service to train for."),
    function: str = typer.Option(..., "--function", "-f", help="Training function module:fn."),
    window: str | None = typer.Option(
        None, "--window", help="Train on the last 30m/12h/7d/2w of event time (default: all)."
    ),
    publish: bool = typer.Option(True, "--publish/--no-publish", help="Publish if accepted."),
    deploy_as_challenger: bool = typer.Option(
        False, "--deploy-as-challenger", help="Deploy the new version beside the champion."
    ),
    output_name: str | None = typer.Option(
        None,
        "--output-name",
        help="Model name to publish under (default: the champion's name, as a new version).",
    ),
    margin: float = typer.Option(
        0.0, "--margin", min=0, help="Publish unless worse than the champion by more than this."
    ),
    holdout: float = typer.Option(0.2, "--holdout", help="Most recent share held out."),
    warm_start: bool = typer.Option(False, "--warm-start", help="Continue the parent version."),
    inputs: str = typer.Option("inputs", "--inputs", help="inputs (input_i) or features (f_*)."),
    min_rows: int = typer.Option(20, "--min-rows", help="Skip a window with fewer rows."),
    sign_key: Annotated[
        Path | None, typer.Option("--sign-key", help="Sign versions with this private key.")
    ] = None,
    feature_set: str | None = typer.Option(None, "--feature-set", help="Lineage feature set."),
    every: float | None = typer.Option(
        None, "--every", help="Run as the trainer role: a cycle every SECONDS."
    ),
    every_labels: int | None = typer.Option(
        None, "--every-labels", help="Run as the trainer role: a cycle every N new labels."
    ),
    spark: bool = typer.Option(False, "--spark", help="Read the archive with local Spark."),
    backplane_url: BackplaneOption = None,
) -> None:
    """Retrain a service's model from its archive and labels (see `modelstream.training`)."""
    settings = settings_of(ctx)
    config = TrainerConfig(
        function,
        output_name=output_name,
        window_ms=parse_window(window),
        holdout_fraction=holdout,
        margin=margin,
        every_seconds=every,
        every_labels=every_labels,
        publish=publish,
        deploy_as_challenger=deploy_as_challenger,
        warm_start=warm_start,
        inputs=inputs,  # type: ignore[arg-type] # validated by TrainerConfig
        min_rows=min_rows,
        sign_key=sign_key,
        feature_set=feature_set,
    )
    from modelstream.training.trainer import Trainer  # pandas: only when it runs

    with backplane_of(ctx) as backplane:
        session = None
        if spark:
            from modelstream.training.spark import SparkTrainer, local_session

            session = local_session()
            trainer: Trainer = SparkTrainer(backplane, settings, service, config, spark=session)
        else:
            trainer = Trainer(backplane, settings, service, config)
        try:
            if every is None and every_labels is None:
                typer.echo(json.dumps(summary(trainer.run_once()), indent=2))
                return
            trainer.start()
            typer.echo(f"trainer of {service} running; Ctrl-C to stop", err=True)
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
        finally:
            trainer.stop()
            if session is not None:
                session.stop()
