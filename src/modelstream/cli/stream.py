"""``modelstream produce`` and ``modelstream consume``: JSON lines in, JSON lines out.

``produce`` reads one JSON document a line from stdin; each valid line becomes one record
whose value is the line's bytes (and whose key, with ``--key-field F``, is field ``F``:
its text for a string, its JSON otherwise). Invalid lines are reported on stderr by line
number and skipped; the valid ones are still produced, and the exit code is then 1.

``consume`` prints one JSON object a line per record: ``topic``, ``partition``,
``offset``, ``timestamp``, ``key`` (text, or base64 with ``key_base64: true``),
``headers`` (name to text or base64), ``value`` (the decoded JSON where the value is JSON,
else text, else base64 with ``value_base64: true``).
"""

from __future__ import annotations

import base64
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson
import typer

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord, Record
from modelstream.cli.context import BackplaneOption, backplane_of
from modelstream.cli.errors import fail, reported

BATCH = 1000


def _key(document: Any, field: str) -> bytes:
    if not isinstance(document, dict) or field not in document:
        raise ValueError(f"no field {field!r} for the key")
    value = document[field]
    return value.encode() if isinstance(value, str) else orjson.dumps(value)


def _records(lines: Iterator[bytes], key_field: str | None) -> Iterator[OutRecord | str]:
    """Records to produce, or an error text naming the line, in input order."""
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            document = orjson.loads(line)
            key = _key(document, key_field) if key_field else None
        except orjson.JSONDecodeError as exc:
            yield f"line {number}: invalid JSON ({exc}); fix or remove that line"
            continue
        except ValueError as exc:
            yield f"line {number}: {exc}; add the field or drop --key-field"
            continue
        yield OutRecord(line, key=key)


@reported
def produce(
    ctx: typer.Context,
    topic: str = typer.Argument(..., help="Topic to produce to (created when missing)."),
    key_field: str | None = typer.Option(
        None, "--key-field", "-k", help="Field of each JSON line to use as the record key."
    ),
    backplane_url: BackplaneOption = None,
) -> None:
    """Produce each JSON line of stdin as a record; print how many were produced."""
    produced = errors = 0
    with backplane_of(ctx) as backplane:
        batch: list[OutRecord] = []
        for item in _records(iter(sys.stdin.buffer), key_field):
            if isinstance(item, str):
                errors += 1
                print(f"error: {item}", file=sys.stderr)
                continue
            batch.append(item)
            if len(batch) >= BATCH:
                produced += len(backplane.produce(topic, batch))
                batch = []
        if batch:
            produced += len(backplane.produce(topic, batch))
    print(f"produced {produced} records to {topic}")
    if errors:
        raise fail(f"{errors} invalid line(s) were not produced")


def _text(data: bytes) -> str | None:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def as_json(record: Record) -> dict[str, Any]:
    """The JSON object ``consume`` prints for ``record``."""
    out: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
    }
    key = None if record.key is None else _text(record.key)
    if record.key is not None and key is None:
        out["key"], out["key_base64"] = base64.b64encode(record.key).decode(), True
    else:
        out["key"] = key
    out["headers"] = {
        name: _text(value) or base64.b64encode(value).decode() for name, value in record.headers
    }
    try:
        out["value"] = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        text = _text(record.value)
        if text is None:
            out["value"], out["value_base64"] = base64.b64encode(record.value).decode(), True
        else:
            out["value"] = text
    return out


def _drain(
    backplane: Backplane,
    *,
    topic: str,
    group: str | None,
    earliest: bool,
    limit: int | None,
    timeout: float | None,
) -> None:
    consumer = backplane.consumer([topic], group=group, start="earliest" if earliest else "latest")
    printed = 0
    last = time.monotonic()
    out = sys.stdout.buffer
    try:
        while limit is None or printed < limit:
            want = 500 if limit is None else min(500, limit - printed)
            records = consumer.poll(want, 0.2)
            if not records:
                if timeout is not None and time.monotonic() - last >= timeout:
                    # Silence means a drained topic or a broker gone: the Kafka consumer
                    # retries transport errors quietly, as long-running roles need. Ask
                    # the backplane once, so a dead broker ends in an error, not exit 0.
                    backplane.list_topics()
                    break
                continue
            last = time.monotonic()
            out.write(b"".join(orjson.dumps(as_json(r)) + b"\n" for r in records))
            out.flush()
            printed += len(records)
            if group is not None:
                consumer.commit()  # after printing: at-least-once
    finally:
        consumer.close()


@reported
def consume(
    ctx: typer.Context,
    topic: str = typer.Argument(..., help="Topic to read."),
    group: str | None = typer.Option(
        None, "--group", "-g", help="Consumer group; offsets are committed as records print."
    ),
    from_beginning: bool = typer.Option(
        False, "--from-beginning", help="Start at the first record (where no offset is committed)."
    ),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="Stop after N records."),
    timeout: float | None = typer.Option(
        None, "--timeout", "-t", min=0, help="Stop after S seconds without a record."
    ),
    backplane_url: BackplaneOption = None,
) -> None:
    """Print records as JSON lines until --limit or --timeout (or Ctrl-C).

    A --timeout ends with exit 0 only if the backplane still answers: a broker that went
    away mid-stream is reported as an error (exit 1) once the connect timeout passes.
    """
    with backplane_of(ctx) as backplane:
        try:
            _drain(
                backplane,
                topic=topic,
                group=group,
                earliest=from_beginning,
                limit=limit,
                timeout=timeout,
            )
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
