"""``modelstream serve`` (every role in one process) and ``modelstream run ROLE`` (one).

Both translate options and call :mod:`modelstream.gateway.serving`; they run until
SIGINT/SIGTERM and stop their roles cleanly.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from modelstream.cli.context import backplane_of, settings_of
from modelstream.cli.errors import fail, reported
from modelstream.gateway.serving import Serving, deployed_services, run_scorer
from modelstream.models.registry import Registry

SERVICE_HELP = "Service to serve (repeat for several; default: every deployed service)."
ServiceOption = Annotated[list[str] | None, typer.Option("--service", "-s", help=SERVICE_HELP)]


class RoleName(StrEnum):
    GATEWAY = "gateway"
    RENDEZVOUS = "rendezvous"
    SCORER = "scorer"


@reported
def serve_command(
    ctx: typer.Context,
    service: ServiceOption = None,
    host: str | None = typer.Option(None, "--host", help="Address to listen on."),
    port: int | None = typer.Option(None, "--port", "-p", min=0, max=65535, help="HTTP port."),
) -> None:
    """Run gateway, rendezvous and every scorer of the services in this process."""
    settings = settings_of(ctx)
    with backplane_of(ctx) as backplane:
        services = deployed_services(Registry(backplane, settings), service or ())
        Serving(backplane, settings, services, host=host, port=port).run()


@reported
def run_command(
    ctx: typer.Context,
    role: Annotated[RoleName, typer.Argument(help="gateway, rendezvous or scorer.")],
    service: ServiceOption = None,
    model: str | None = typer.Option(
        None, "--model", help="scorer only: run the scorer of this model name alone."
    ),
    host: str | None = typer.Option(None, "--host", help="gateway only: address."),
    port: int | None = typer.Option(None, "--port", "-p", min=0, max=65535, help="gateway only."),
) -> None:
    """Run one role of the services (on Kafka, each role can be a process of its own)."""
    settings = settings_of(ctx)
    with backplane_of(ctx) as backplane:
        services = deployed_services(Registry(backplane, settings), service or ())
        if role is RoleName.SCORER and model is not None:
            if len(services) != 1:
                raise fail("--model needs exactly one --service")
            run_scorer(backplane, settings, services[0], model)
            return
        Serving(
            backplane,
            settings,
            services,
            host=host,
            port=port,
            gateway=role is RoleName.GATEWAY,
            rendezvous=role is RoleName.RENDEZVOUS,
            scorers=role is RoleName.SCORER,
        ).run()
