"""librdkafka configuration of the Kafka engine, and the translation of its errors.

One place decides how every client handle is configured, so the producer, consumers,
readers and the admin client agree: the same bootstrap list, logs routed to Python
``logging`` (never printed to stderr), and timeouts derived from :class:`Settings`.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from modelstream.backplane.records import KAFKA_MAX_RECORD_BYTES
from modelstream.errors import BackplaneError, BackplaneUnavailable
from modelstream.settings import Settings

#: librdkafka's own log lines (connection resets and the like) land here, not on stderr.
LIBRDKAFKA_LOG = logging.getLogger("modelstream.backplane.kafka.librdkafka")
LOG = logging.getLogger("modelstream.backplane.kafka")
# Without a handler anywhere, Python's last-resort handler would print every warning to
# stderr; an application that configures logging still receives these records.
LIBRDKAFKA_LOG.addHandler(logging.NullHandler())
LOG.addHandler(logging.NullHandler())

Config = dict[str, Any]

#: How long a broker may hold a fetch that finds no new records. Apache Kafka answers a
#: held fetch as soon as records arrive, so there this only sets how often an idle
#: consumer asks (cheap for Kafka). tansu holds every fetch for the full wait even when
#: records arrive, so there it is the produce->consume latency: measured on tansu 0.6
#: (benchmarks/backplane.py, one process), 20 ms gave p50/p99 of 11.6/14.8 ms, 10 ms
#: 6.3/8.7 ms, 5 ms 3.9/5.2 ms; the price is fetch requests while idle: five idle
#: consumers cost the tansu broker 13% of a core at 20 ms, 18% at 10 ms and 28% at 5 ms.
#: A shorter wait does not lower throughput. 10 ms halves tansu's latency at a modest
#: idle cost on a small machine that runs the broker and every role.
FETCH_WAIT_MS = 10


def _on_error(error: KafkaError) -> None:
    # Transport errors are retried by librdkafka on its own (a down broker reports one
    # per reconnect attempt): a debug line, not an exception in an unrelated thread.
    # Calls that cannot complete raise BackplaneUnavailable themselves.
    if error.fatal():
        LOG.error("kafka client fatal error: %s", error.str())
    else:
        LOG.debug("kafka client error: %s", error.str())


def common(brokers: str, settings: Settings) -> Config:
    """Settings every handle shares."""
    timeout_ms = int(settings.connect_timeout_s * 1000)
    return {
        "bootstrap.servers": brokers,
        "logger": LIBRDKAFKA_LOG,
        "error_cb": _on_error,
        "socket.connection.setup.timeout.ms": max(1000, timeout_ms),
        "log.connection.close": False,
        # Metadata must not be cached for long: topics are created and deleted by others.
        "topic.metadata.refresh.interval.ms": 30_000,
    }


def max_record_bytes(settings: Settings) -> int:
    """The largest record the engine produces (its own check, before librdkafka's)."""
    return settings.max_record_bytes or KAFKA_MAX_RECORD_BYTES


def producer(brokers: str, settings: Settings) -> Config:
    """The shared producer: idempotent, acks from every in-sync replica, murmur2 keys.

    Every record is given an explicit partition by the engine (``partitions_for``), so
    ``murmur2_random`` only matters for code that produces through this handle without
    one; it is set anyway so that the placement matches the Java client.
    """
    return {
        **common(brokers, settings),
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        # linger.ms never delays an acknowledged produce: the engine flushes right after
        # handing over a batch, and a flush sends at once. It only lets records that
        # other threads produce meanwhile share a request, so it costs no latency.
        "linger.ms": 5,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "compression.type": "none",
        # Above the engine's own limit (checked first, with a clear error), so that
        # librdkafka never refuses a record the engine let through; the headroom is the
        # protocol's per-record overhead.
        "message.max.bytes": max_record_bytes(settings) + 64 * 1024,
        # A produce call waits for acknowledgements; it must give up rather than hang.
        "message.timeout.ms": max(5_000, 3 * int(settings.connect_timeout_s * 1000)),
    }


def consumer(brokers: str, settings: Settings, group: str) -> Config:
    """A group member (or, with a private group id, an assign-only reader).

    Offsets are only ever committed explicitly (at-least-once). A member whose process
    dies leaves the group after ``session_timeout_ms`` (its heartbeats stop), as on the
    other engines; one that lives but does not poll, after
    :meth:`~modelstream.settings.Settings.max_poll_interval` (twice the session by
    default). Longer, because librdkafka heartbeats from a thread of its own, so the
    session already tells a dead process from a live one, and a poll interval as short
    as the session turned every slow step (a takeover on a starved machine) into a
    rebalance. Not much longer, because it is also the rebalance timeout: how long a
    rebalance may wait for a member that died during it (tansu waits it out).
    """
    session = settings.session_timeout_ms
    fetch = 2 * max_record_bytes(settings) + 64 * 1024
    return {
        **common(brokers, settings),
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "range",
        "session.timeout.ms": session,
        "heartbeat.interval.ms": max(100, session // 3),
        "max.poll.interval.ms": settings.max_poll_interval(),
        "fetch.wait.max.ms": FETCH_WAIT_MS,
        "fetch.min.bytes": 1,
        "queued.max.messages.kbytes": 262_144,
        # A fetch must always hold a whole batch: a batch can be a record at the limit
        # plus the small records a producer added to it.
        "fetch.message.max.bytes": fetch,
        "fetch.max.bytes": max(fetch, 52_428_800),
        "receive.message.max.bytes": max(fetch, 52_428_800) + 1024 * 1024,
        # When the local queue passes queued.min.messages (the application is behind),
        # librdkafka pauses fetching for this long; its default of 1000 ms shows as a
        # one-second stall in every catch-up read. A short pause keeps the bound on
        # memory and costs only a few more fetch requests while the reader is behind.
        "fetch.queue.backoff.ms": 10,
    }


def fail(action: str, exc: BaseException) -> BackplaneError:
    """A modelstream error for a failed client call, with a message for the operator."""
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    text = error.str() if isinstance(error, KafkaError) else str(exc)
    transport = isinstance(error, KafkaError) and error.code() in {
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._TIMED_OUT_QUEUE,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._MSG_TIMED_OUT,
        KafkaError.REQUEST_TIMED_OUT,
    }
    if transport or isinstance(exc, TimeoutError):
        return BackplaneUnavailable(
            f"kafka broker did not answer ({action}: {text}); check that it runs and is reachable"
        )
    return BackplaneError(f"kafka {action} failed: {text}")
