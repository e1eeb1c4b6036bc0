"""``modelstream serve`` (every role in one process) and ``modelstream run ROLE`` (one).

Both translate options into a :class:`~modelstream.gateway.loop.LoopConfig` and call
:mod:`modelstream.gateway.serving`; they run until SIGINT/SIGTERM and stop their roles
cleanly. ``serve`` runs the monitor and the archiver unless told not to, and the trainer
and automatic promotion when ``--train module:function`` is given.
"""

from __future__ import annotations

import logging
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from modelstream.cli.context import BackplaneOption, backplane_of, log_to_stderr, settings_of
from modelstream.cli.errors import fail, reported
from modelstream.gateway.loop import LoopConfig
from modelstream.gateway.serving import Serving, deployed_services, run_scorer
from modelstream.gateway.supervisor import Supervisor, serve_roles
from modelstream.models.registry import Registry

log = logging.getLogger(__name__)

SERVICE_HELP = "Service to serve (repeat for several; default: every deployed service)."
ServiceOption = Annotated[list[str] | None, typer.Option("--service", "-s", help=SERVICE_HELP)]


class RoleName(StrEnum):
    GATEWAY = "gateway"
    RENDEZVOUS = "rendezvous"
    SCORER = "scorer"
    FEATURIZER = "featurizer"
    MONITOR = "monitor"
    ARCHIVER = "archiver"
    TRAINER = "trainer"


TrainOption = Annotated[
    str | None,
    typer.Option(
        "--train",
        help="Training function module:function: retrain, publish a new version of the "
        "champion's name and deploy it as a challenger.",
    ),
]
EveryLabelsOption = Annotated[
    int, typer.Option("--train-every-labels", min=1, help="Retrain every N new labels.")
]
EverySecondsOption = Annotated[
    float | None,
    typer.Option("--train-every-seconds", min=0.001, help="Retrain every T seconds too."),
]
WindowOption = Annotated[
    float | None,
    typer.Option(
        "--train-window",
        min=0.001,
        help="Train on the last T seconds of event time (default: the whole archive).",
    ),
]
AutoPromoteOption = Annotated[
    bool | None,
    typer.Option(
        "--auto-promote/--no-auto-promote",
        help="Promote a challenger that beats the champion with significance "
        "(default: on with --train).",
    ),
]
MinLabelsOption = Annotated[
    int,
    typer.Option("--min-labels", min=1, help="Auto-promotion: labelled requests needed."),
]
AlphaOption = Annotated[
    float, typer.Option("--alpha", min=0.0001, max=0.5, help="Auto-promotion: significance.")
]


@reported
def serve_command(
    ctx: typer.Context,
    service: ServiceOption = None,
    host: str | None = typer.Option(None, "--host", help="Address to listen on."),
    port: int | None = typer.Option(None, "--port", "-p", min=0, max=65535, help="HTTP port."),
    no_monitor: bool = typer.Option(False, "--no-monitor", help="Do not run the monitor."),
    no_archive: bool = typer.Option(False, "--no-archive", help="Do not run the archiver."),
    train: TrainOption = None,
    train_every_labels: EveryLabelsOption = 500,
    train_every_seconds: EverySecondsOption = None,
    train_window: WindowOption = None,
    auto_promote: AutoPromoteOption = None,
    min_labels: MinLabelsOption = 200,
    alpha: AlphaOption = 0.05,
    processes: bool = typer.Option(
        False,
        "--processes",
        help="Run each role as a child process (using every core); this process starts, "
        "restarts and stops them. Needs a sqlite:// or kafka:// backplane.",
    ),
    scorer_processes: int = typer.Option(
        1,
        "--scorer-processes",
        min=1,
        help="With --processes: scorer children (they "
        "split the partitions of each model's consumer group).",
    ),
    backplane_url: BackplaneOption = None,
) -> None:
    """Run every role of the services: gateway, rendezvous, scorers, featurizers, monitor,
    archiver, and with --train the trainer and automatic promotion. In this process, or
    with --processes as supervised child processes."""
    settings = settings_of(ctx)
    ctx.call_on_close(log_to_stderr(settings))
    loop = _loop(
        train,
        train_every_labels,
        train_every_seconds,
        train_window,
        auto_promote,
        min_labels,
        alpha,
    )
    if train is not None and no_archive:
        raise fail("--train reads the archive: drop --no-archive")
    with backplane_of(ctx) as backplane:
        registry = Registry(backplane, settings)
        services = deployed_services(registry, service or ())
        if processes:
            featurized = any(registry.deployment(s).feature_set is not None for s in services)
            roles = serve_roles(
                services,
                host=host,
                port=port,
                featurizer=featurized,
                monitor=not no_monitor,
                archiver=not no_archive,
                loop=loop,
                scorer_processes=scorer_processes,
            )
            Supervisor(settings.backplane, roles).run()
            return
        Serving(
            backplane,
            settings,
            services,
            host=host,
            port=port,
            monitor=not no_monitor,
            archiver=not no_archive,
            loop=loop,
        ).run()


@reported
def run_command(
    ctx: typer.Context,
    role: Annotated[
        RoleName,
        typer.Argument(
            help="gateway, rendezvous, scorer, featurizer, monitor, archiver or trainer "
            "(the trainer role also runs automatic promotion)."
        ),
    ],
    service: ServiceOption = None,
    model: str | None = typer.Option(
        None, "--model", help="scorer only: run the scorer of this model name alone."
    ),
    host: str | None = typer.Option(None, "--host", help="gateway only: address."),
    port: int | None = typer.Option(None, "--port", "-p", min=0, max=65535, help="gateway only."),
    train: TrainOption = None,
    train_every_labels: EveryLabelsOption = 500,
    train_every_seconds: EverySecondsOption = None,
    train_window: WindowOption = None,
    auto_promote: AutoPromoteOption = None,
    min_labels: MinLabelsOption = 200,
    alpha: AlphaOption = 0.05,
    ready_file: Annotated[
        Path | None,
        typer.Option(
            "--ready-file",
            hidden=True,
            help="Create this file once the role has started (serve --processes waits on it).",
        ),
    ] = None,
    backplane_url: BackplaneOption = None,
) -> None:
    """Run one role of the services (on Kafka, each role can be a process of its own)."""
    settings = settings_of(ctx)
    ctx.call_on_close(log_to_stderr(settings))
    # The process is up and imported: with the role's own lines, this times a restart.
    log.info("run %s: starting (pid %d)", role.value, os.getpid())
    on_ready = None if ready_file is None else ready_file.touch
    with backplane_of(ctx) as backplane:
        services = deployed_services(Registry(backplane, settings), service or ())
        if role is RoleName.SCORER and model is not None:
            if len(services) != 1:
                raise fail("--model needs exactly one --service")
            run_scorer(backplane, settings, services[0], model, on_ready=on_ready)
            return
        if role is RoleName.FEATURIZER:
            registry = Registry(backplane, settings)
            bare = [s for s in services if registry.deployment(s).feature_set is None]
            if bare and service:
                raise fail(
                    f"service {bare[0]} has no feature set: deploy one with "
                    "`modelstream deploy ... --feature-set REF` (or a spec's features:)"
                )
            if len(bare) == len(services):
                raise fail("no service has a feature set, so there is nothing to featurize")
        loop = _loop(
            train,
            train_every_labels,
            train_every_seconds,
            train_window,
            auto_promote,
            min_labels,
            alpha,
        )
        if role is RoleName.TRAINER and train is None and not loop.promotes:
            raise fail("the trainer role needs --train module:function (or --auto-promote)")
        Serving(
            backplane,
            settings,
            services,
            host=host,
            port=port,
            gateway=role is RoleName.GATEWAY,
            rendezvous=role is RoleName.RENDEZVOUS,
            scorers=role is RoleName.SCORER,
            featurizers=role is RoleName.FEATURIZER,
            monitor=role is RoleName.MONITOR,
            archiver=role is RoleName.ARCHIVER,
            trainer=role is RoleName.TRAINER,
            loop=loop,
        ).run(on_ready=on_ready)


def _loop(
    train: str | None,
    every_labels: int | None,
    every_seconds: float | None,
    window: float | None,
    auto_promote: bool | None,
    min_labels: int,
    alpha: float,
) -> LoopConfig:
    """The loop options shared by ``serve`` and ``run``, as one :class:`LoopConfig`."""
    return LoopConfig(
        train=train,
        train_every_labels=every_labels,
        train_every_seconds=every_seconds,
        train_window_seconds=window,
        auto_promote=auto_promote,
        min_labels=min_labels,
        alpha=alpha,
    )
