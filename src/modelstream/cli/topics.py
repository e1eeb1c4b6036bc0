"""``modelstream topics list|create|describe|delete``: manage the backplane's topics."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from modelstream.cli.context import BackplaneOption, backplane_of
from modelstream.cli.errors import reported

app = typer.Typer(help="List, create, describe and delete topics.", no_args_is_help=True)
console = Console()


@app.command("list")
@reported
def list_topics(ctx: typer.Context, backplane_url: BackplaneOption = None) -> None:
    """Every topic with its partition count."""
    with backplane_of(ctx) as backplane:
        specs = backplane.list_topics()
    table = Table("topic", "partitions", "compacted", title=f"topics ({len(specs)})")
    for spec in specs:
        table.add_row(spec.name, str(spec.partitions), "yes" if spec.compacted else "")
    console.print(table)


@app.command("create")
@reported
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Topic name."),
    partitions: int | None = typer.Option(
        None, "--partitions", "-p", min=1, help="Partition count (default: the setting)."
    ),
    compacted: bool = typer.Option(False, "--compacted", help="Keep the latest per key."),
    backplane_url: BackplaneOption = None,
) -> None:
    """Create a topic (an existing one is left as it is)."""
    with backplane_of(ctx) as backplane:
        spec = backplane.create_topic(name, partitions, compacted=compacted)
    kind = " compacted" if spec.compacted else ""
    console.print(f"topic {spec.name}: {spec.partitions} partitions{kind}")


@app.command("describe")
@reported
def describe(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Topic name."),
    backplane_url: BackplaneOption = None,
) -> None:
    """Partitions with record counts and end offsets; groups with committed offsets and lag."""
    with backplane_of(ctx) as backplane:
        info = backplane.describe_topic(name)
    kind = ", compacted" if info.spec.compacted else ""
    parts = Table(
        "partition",
        "start",
        "end offset",
        "records",
        title=f"{name}: {info.spec.partitions} partitions, {info.records} records{kind}",
    )
    for p in info.partitions:
        parts.add_row(str(p.partition), str(p.start), str(p.end), str(p.records))
    console.print(parts)
    groups = Table("group", "members", "committed", "lag", title="groups")
    for g in info.groups:
        committed = ", ".join(f"{p}:{o}" for p, o in sorted(g.committed.items()))
        groups.add_row(g.group, str(g.members), committed, str(g.total_lag))
    if info.groups:
        console.print(groups)
    else:
        console.print("no consumer groups")


@app.command("delete")
@reported
def delete(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Topic name."),
    backplane_url: BackplaneOption = None,
) -> None:
    """Delete a topic and its records."""
    with backplane_of(ctx) as backplane:
        backplane.delete_topic(name)
    console.print(f"deleted topic {name}")
