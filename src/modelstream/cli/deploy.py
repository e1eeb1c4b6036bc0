"""``modelstream deploy|promote|rollback|apply``: write deployment records."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from modelstream.cli.context import BackplaneOption, backplane_of, settings_of
from modelstream.cli.errors import reported
from modelstream.errors import ServiceNotFound
from modelstream.features.spec import feature_set_ref
from modelstream.models.deployment import Deployment, Policy, PolicyKind
from modelstream.models.integrity import read_public_key
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.models.spec import load_spec


def _report(d: Deployment) -> None:
    live = ", ".join(f"{m.ref} ({m.role.value})" for m in d.models)
    print(
        f"{d.service} revision {d.revision}: {live}; policy {d.policy.kind.value}, "
        f"deadline {d.deadline_ms} ms" + (f"; features {d.feature_set}" if d.feature_set else "")
    )


@reported
def deploy(
    ctx: typer.Context,
    service: Annotated[str, typer.Option("--service", "-s", help="Service name.")],
    champion: Annotated[str, typer.Option("--champion", help="NAME@VERSION answering by default.")],
    challenger: Annotated[
        list[str] | None, typer.Option("--challenger", help="NAME@VERSION (repeatable).")
    ] = None,
    canary: Annotated[
        str | None, typer.Option("--canary", help="NAME@VERSION, never chosen.")
    ] = None,
    decoy: Annotated[
        list[str] | None, typer.Option("--decoy", help="NAME@VERSION (repeatable).")
    ] = None,
    shadow: Annotated[
        list[str] | None, typer.Option("--shadow", help="NAME@VERSION (repeatable).")
    ] = None,
    policy: Annotated[
        PolicyKind | None, typer.Option("--policy", help="Rendezvous policy.")
    ] = None,
    deadline_ms: Annotated[
        int | None, typer.Option("--deadline-ms", min=1, help="Deadline.")
    ] = None,
    allow_python: Annotated[
        bool | None,
        typer.Option("--allow-python/--no-allow-python", help="Allow python-format models."),
    ] = None,
    require_signature: Annotated[
        bool | None,
        typer.Option("--require-signature/--no-require-signature", help="Refuse unsigned models."),
    ] = None,
    trust_key: Annotated[
        list[Path] | None, typer.Option("--trust-key", help="A .pub file to trust.")
    ] = None,
    feature_set: Annotated[
        str | None,
        typer.Option(
            "--feature-set",
            help="package.module:ATTRIBUTE or a feature-set YAML file: requests then go "
            "through the featurizer ('' removes it).",
        ),
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the history).")] = "",
    backplane_url: BackplaneOption = None,
) -> None:
    """Write a deployment: which versions are live, in which roles."""
    trusted = dict(read_public_key(p) for p in trust_key) if trust_key else None
    if feature_set:
        feature_set = feature_set_ref(feature_set)  # refuse what the featurizer cannot load
    with backplane_of(ctx) as backplane:
        registry = Registry(backplane, settings_of(ctx))
        if trusted is not None and service in registry.services():
            # --trust-key adds to the keys trusted so far rather than replacing them.
            with contextlib.suppress(ServiceNotFound):
                trusted = {**registry.deployment(service).trusted_keys, **trusted}
        d = registry.deploy(
            service,
            ModelRef.parse(champion),
            [ModelRef.parse(r) for r in challenger or []],
            canary=ModelRef.parse(canary) if canary else None,
            decoys=[ModelRef.parse(r) for r in decoy or []],
            shadows=[ModelRef.parse(r) for r in shadow or []],
            policy=Policy(policy) if policy else None,
            deadline_ms=deadline_ms,
            reason=reason,
            require_signature=require_signature,
            trusted_keys=trusted,
            allow_python=allow_python,
            feature_set=feature_set,
        )
    _report(d)


@reported
def promote(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name.")],
    ref: Annotated[str, typer.Argument(help="NAME@VERSION to make champion.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the history).")] = "",
    backplane_url: BackplaneOption = None,
) -> None:
    """Make a version the champion; the old champion becomes a challenger."""
    with backplane_of(ctx) as backplane:
        d = Registry(backplane, settings_of(ctx)).promote(service, ModelRef.parse(ref), reason)
    _report(d)


@reported
def rollback(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the history).")] = "",
    backplane_url: BackplaneOption = None,
) -> None:
    """Go back to the previous champion's deployment."""
    with backplane_of(ctx) as backplane:
        d = Registry(backplane, settings_of(ctx)).rollback(service, reason)
    _report(d)


@reported
def apply(
    ctx: typer.Context,
    spec: Annotated[Path, typer.Argument(help="The service YAML spec.")],
    backplane_url: BackplaneOption = None,
) -> None:
    """Publish and deploy what a service spec says (idempotent)."""
    parsed = load_spec(spec)
    with backplane_of(ctx) as backplane:
        d = Registry(backplane, settings_of(ctx)).apply(parsed)
    _report(d)
