"""``modelstream models publish|list|show|convert``: models as data on the ``models`` topic."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from modelstream.backplane.records import now_ms
from modelstream.cli.context import BackplaneOption, backplane_of, settings_of
from modelstream.cli.errors import reported
from modelstream.cli.stats import stats_command
from modelstream.errors import ConfigurationError, ServiceNotFound
from modelstream.models.descriptor import Lineage
from modelstream.models.formats import format_for_path
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry

app = typer.Typer(help="Publish, list, show and convert models.", no_args_is_help=True)
console = Console()


def parse_meta(items: list[str]) -> dict[str, str]:
    """``key=value`` pairs of ``--meta``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"--meta {item!r} must be key=value")
        out[key] = value
    return out


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in some containers
        return ""


@app.command("publish")
@reported
def publish(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The model file (.onnx, .skops, .river, .json).")],
    service: Annotated[str, typer.Option("--service", "-s", help="Service name.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Model name.")],
    version: Annotated[int | None, typer.Option("--version", min=1, help="Default: next.")] = None,
    format: Annotated[
        str | None, typer.Option("--format", "-f", help="Default: from extension.")
    ] = None,
    entrypoint: Annotated[
        str | None, typer.Option("--entrypoint", help="module:Class (python).")
    ] = None,
    sign_key: Annotated[
        Path | None, typer.Option("--sign-key", help="Ed25519 private key file.")
    ] = None,
    meta: Annotated[
        list[str] | None, typer.Option("--meta", help="Tag key=value (repeatable).")
    ] = None,
    backplane_url: BackplaneOption = None,
) -> None:
    """Load FILE once to validate it, then publish it as NAME@VERSION."""
    data = file.read_bytes()
    lineage = Lineage(created_at=now_ms(), created_by=_user(), tags=parse_meta(meta or []))
    with backplane_of(ctx) as backplane:
        descriptor = Registry(backplane, settings_of(ctx)).publish(
            service,
            name,
            data,
            format=format or format_for_path(file.name),
            version=version,
            entrypoint=entrypoint,
            sign_key=sign_key,
            lineage=lineage,
        )
    signed = f", signed by {descriptor.key_id}" if descriptor.key_id else ""
    size = f"{descriptor.size} bytes"
    print(f"published {service}/{descriptor.ref} ({descriptor.format}, {size}{signed})")


@app.command("list")
@reported
def list_models(
    ctx: typer.Context,
    service: Annotated[str, typer.Option("--service", "-s", help="Service name.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
    backplane_url: BackplaneOption = None,
) -> None:
    """Every published version of the service's models, and its live role."""
    with backplane_of(ctx) as backplane:
        registry = Registry(backplane, settings_of(ctx))
        descriptors = registry.descriptors(service)
        try:
            live = {m.ref: m.role.value for m in registry.deployment(service).models}
        except ServiceNotFound:  # no deployment yet: nothing is live
            live = {}
    if as_json:
        for d in descriptors:
            print(json.dumps({**d.summary(), "role": live.get(d.ref)}))
        return
    table = Table("model", "format", "size", "signed", "created", "role", title=service)
    for d in descriptors:
        table.add_row(
            str(d.ref),
            d.format,
            str(d.size),
            d.key_id or "",
            str(d.lineage.created_at),
            live.get(d.ref, ""),
        )
    console.print(table)


@app.command("show")
@reported
def show(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name.")],
    ref: Annotated[str, typer.Argument(help="NAME@VERSION.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    backplane_url: BackplaneOption = None,
) -> None:
    """One version's descriptor (without its bytes)."""
    with backplane_of(ctx) as backplane:
        d = Registry(backplane, settings_of(ctx)).descriptor(service, ModelRef.parse(ref))
    summary: dict[str, Any] = d.summary()
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        console.print(f"[bold]{key}[/bold]: {value}")


@app.command("convert")
@reported
def convert(
    model: Annotated[Path, typer.Argument(help="A scikit-learn model saved with joblib.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the .onnx file.")],
    features: Annotated[int | None, typer.Option("--features", min=1, help="Input width.")] = None,
    backplane_url: BackplaneOption = None,
) -> None:
    """Convert a scikit-learn model to ONNX with skl2onnx (your own local file)."""
    import joblib  # type: ignore[import-untyped]

    from modelstream.testing.sklearn import to_onnx

    # joblib unpickles: acceptable only because this is the user's own local file.
    estimator = joblib.load(model)
    width = features or getattr(estimator, "n_features_in_", None)
    if not width:
        raise ConfigurationError("cannot tell the model's input width: pass --features N")
    try:
        data = to_onnx(estimator, int(width))
    except Exception as exc:  # skl2onnx raises many kinds of errors for unsupported models
        raise ConfigurationError(
            f"skl2onnx cannot convert {type(estimator).__name__}: {' '.join(str(exc).split())}"
        ) from None
    out.write_bytes(data)
    print(f"wrote {out} ({len(data)} bytes, input [N, {width}] float32)")


app.command("stats")(stats_command)
