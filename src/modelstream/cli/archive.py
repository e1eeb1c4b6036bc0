"""``modelstream archive run|ls`` and ``modelstream replay``: the archive from the shell.

The archive root is ``Settings.archive_root()`` (``MODELSTREAM_ARCHIVE_DIR``, else next
to a sqlite backplane, else ``./.modelstream/archive``).
"""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from types import FrameType

import typer
from rich.console import Console
from rich.table import Table

from modelstream.cli.context import BackplaneOption, backplane_of, settings_of
from modelstream.cli.errors import reported
from modelstream.errors import ConfigurationError
from modelstream.wire.topics import check_name

app = typer.Typer(help="Archive a service's streams to Parquet, and list the archive.")
console = Console()


def parse_time(text: str | None, option: str) -> datetime | None:
    """An ISO 8601 date or datetime (naive = UTC), or milliseconds since the epoch."""
    if text is None:
        return None
    try:
        if text.isdigit():
            return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise ConfigurationError(
            f"{option} {text!r} is not a time: use ISO 8601 (2026-01-31 or "
            "2026-01-31T12:00:00Z) or milliseconds since the epoch"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@app.command("run")
@reported
def run(
    ctx: typer.Context,
    service: str = typer.Option(..., "--service", "-s", help="Service to archive."),
    flush_rows: int = typer.Option(10_000, "--flush-rows", min=1, help="Rows per flush."),
    flush_seconds: float = typer.Option(5.0, "--flush-seconds", min=0.01, help="Max delay."),
    backplane_url: BackplaneOption = None,
) -> None:
    """Run the archiver role in the foreground until Ctrl-C (flushes before exiting)."""
    settings = settings_of(ctx)
    root = settings.archive_root()
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, _stop)
    with backplane_of(ctx) as backplane:
        from modelstream.archive.archiver import Archiver  # pyarrow: only when it runs

        archiver = Archiver(
            backplane,
            check_name("service", service),
            root,
            flush_rows=flush_rows,
            flush_seconds=flush_seconds,
            retry_max_s=settings.retry_max_s(),
        )
        console.print(f"archiving {service} to {root} (Ctrl-C to stop)")
        try:
            archiver.run(stop)
        except KeyboardInterrupt:
            archiver.close()
        finally:
            signal.signal(signal.SIGTERM, previous)
    s = archiver.stats()
    console.print(
        f"archived {s.rows_written} rows in {s.files_written} files; "
        f"{s.dead_lettered} records dead-lettered"
    )


@app.command("ls")
@reported
def ls(
    ctx: typer.Context,
    service: str = typer.Option(..., "--service", "-s", help="Service to list."),
    backplane_url: BackplaneOption = None,
) -> None:
    """Rows and files archived per kind and date (before deduplication)."""
    root = settings_of(ctx).archive_root()
    from modelstream.archive.reader import ArchiveReader  # pandas: only when it runs

    summary = ArchiveReader(root).summary(check_name("service", service))
    table = Table("kind", "date", "files", "rows", title=f"archive of {service} in {root}")
    for row in summary.itertuples(index=False):
        table.add_row(str(row.kind), str(row.date), str(row.files), str(row.rows))
    if summary.empty:
        console.print(f"nothing archived for {service} in {root}")
    else:
        console.print(table)


@reported
def replay_command(
    ctx: typer.Context,
    service: str = typer.Option(..., "--service", "-s", help="Service whose archive to read."),
    start: str | None = typer.Option(None, "--from", help="Event time from (inclusive)."),
    end: str | None = typer.Option(None, "--to", help="Event time to (exclusive)."),
    to_service: str | None = typer.Option(
        None, "--to-service", help="Service to send to (default: the same)."
    ),
    rate: float | None = typer.Option(None, "--rate", min=0.001, help="Requests per second."),
    backplane_url: BackplaneOption = None,
) -> None:
    """Re-send archived requests (new ids, fresh deadlines, no reply_to) onto a service."""
    settings = settings_of(ctx)
    from modelstream.archive.reader import ArchiveReader
    from modelstream.archive.replay import replay

    reader = ArchiveReader(settings.archive_root())
    with backplane_of(ctx) as backplane:
        report = replay(
            backplane,
            reader,
            check_name("service", service),
            parse_time(start, "--from"),
            parse_time(end, "--to"),
            to_service=None if to_service is None else check_name("service", to_service),
            rate=rate,
        )
    console.print(
        f"replayed {report.sent} requests of {report.service} onto "
        f"{report.to_service}.requests in {report.seconds:.1f} s"
    )
