"""``modelstream features build``: the training table, from the same feature definitions.

The feature set comes from ``--spec FILE`` (a YAML file with a ``features:`` key, an
import path or the definitions) or ``--feature-set package.module:ATTRIBUTE``; without
either, from the service's deployment (the one its featurizer runs), read from the
registry. The archive is ``topic:NAME`` (``topic:`` alone: ``SERVICE.events``) read
from the backplane, the project's archive (its root: the service's ``kind=events``
are read), or a Parquet file or directory of events. See
:mod:`modelstream.features.offline` for what each row holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from modelstream.cli.context import BackplaneOption, backplane_of, settings_of
from modelstream.cli.errors import reported
from modelstream.errors import ConfigurationError, ServiceNotFound
from modelstream.features.definitions import FeatureSet
from modelstream.features.records import events_topic
from modelstream.features.spec import import_feature_set, load_feature_set, resolve_feature_set
from modelstream.models.registry import Registry
from modelstream.wire.topics import check_name

if TYPE_CHECKING:
    from modelstream.features import offline

app = typer.Typer(help="Build feature tables offline.", no_args_is_help=True)
console = Console()


def _feature_set(
    ctx: typer.Context, service: str, spec: Path | None, feature_set: str | None
) -> FeatureSet:
    if spec is not None and feature_set is not None:
        raise ConfigurationError("give the features once: --spec FILE or --feature-set, not both")
    if spec is not None:
        return load_feature_set(spec)
    if feature_set is not None:
        return import_feature_set(feature_set)
    with backplane_of(ctx) as backplane:
        try:
            ref = Registry(backplane, settings_of(ctx)).deployment(service).feature_set
        except ServiceNotFound:
            ref = None
    if ref is None:
        raise ConfigurationError(
            f"service {service!r} has no deployment with a feature set to build; deploy "
            "one (deploy --feature-set REF) or give the features: --spec FILE or "
            "--feature-set module:attr"
        )
    return resolve_feature_set(ref)


@app.command("build")
@reported
def build(
    ctx: typer.Context,
    *,
    service: str = typer.Option(..., "--service", "-s", help="The service."),
    source: str = typer.Option(
        ...,
        "--from",
        help="topic:NAME (topic: = SERVICE.events), the archive root, or Parquet of events.",
    ),
    out: str = typer.Option(..., "--out", "-o", help="The Parquet file to write."),
    spec: str | None = typer.Option(
        None, "--spec", help="YAML with a features: key (default: the deployment's)."
    ),
    feature_set: str | None = typer.Option(
        None, "--feature-set", help="package.module:ATTRIBUTE (default: the deployment's)."
    ),
    rows: str = typer.Option("events", "--rows", help="events or requests: one row per."),
    partitions: int | None = typer.Option(
        None, "--partitions", min=1, help="Partitions to place Parquet rows (default: setting)."
    ),
    late_out: str | None = typer.Option(None, "--late", help="Also write late records here."),
    backplane_url: BackplaneOption = None,
) -> None:
    """Replay the feature definitions over an archive into a training table."""
    from modelstream.features import offline  # pyarrow: only when it runs

    check_name("service", service)
    if rows not in ("events", "requests"):
        raise ConfigurationError("--rows must be events or requests")
    definitions = _feature_set(ctx, service, None if spec is None else Path(spec), feature_set)
    if source.startswith("topic:"):
        topic = source[len("topic:") :] or events_topic(service)
        with backplane_of(ctx) as backplane:
            result = offline.build(definitions, offline.topic_entries(backplane, topic))
    else:
        count = partitions or settings_of(ctx).default_partitions
        result = offline.build(
            definitions, offline.parquet_entries(Path(source), definitions, count, service)
        )
    table = result.event_rows if rows == "events" else result.request_rows
    written = offline.write_parquet(table, Path(out))
    if late_out is not None:
        offline.write_parquet([vars_of(late) for late in result.late], Path(late_out))
    console.print(
        f"{definitions.ref}: wrote {written} {rows} rows to {out} "
        f"({len(result.late)} late records, {result.undecodable} undecodable)"
    )


def vars_of(late: offline.LateRow) -> dict[str, object]:
    return {
        "partition": late.partition,
        "offset": late.offset,
        "entity": late.entity,
        "event_time": late.event_time,
        "reason": late.reason,
    }
