"""Settings: one object, built at the entry point (CLI or a test) and passed down.

Values come from keyword arguments, then ``MODELSTREAM_*`` environment variables, then
the defaults below. Nothing below the entry point reads the environment itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BACKPLANE = "sqlite://./.modelstream"


class Settings(BaseSettings):
    """Process-wide settings of modelstream."""

    model_config = SettingsConfigDict(env_prefix="MODELSTREAM_", frozen=True, extra="ignore")

    backplane: str = Field(
        default=DEFAULT_BACKPLANE,
        description="Backplane URL: memory://, sqlite://path, or kafka://host:port[,host:port]",
    )
    default_partitions: int = Field(default=4, ge=1, le=1024)
    session_timeout_ms: int = Field(
        default=6000,
        ge=100,
        description="A group member not heard from for this long is considered dead (on "
        "SQLite and in memory: one that has not polled; on Kafka: one whose heartbeats "
        "stopped, its process dead, see max_poll_interval_ms)",
    )
    max_poll_interval_ms: int | None = Field(
        default=None,
        ge=1000,
        description="On Kafka, where a client heartbeats from a thread of its own: a member "
        "whose process is alive but has not polled for this long is dropped from its group "
        "(default: twice the session timeout; never less than it). A dead process is "
        "dropped after session_timeout_ms, when its heartbeats stop. It is also how long a "
        "rebalance may wait for a member that died mid-rebalance (Kafka's rebalance "
        "timeout), so it is not set high",
    )
    connect_timeout_s: float = Field(
        default=10.0, gt=0, description="How long to wait for a broker before giving up"
    )
    api_token: str | None = Field(
        default=None, description="Token required on management HTTP calls when set"
    )
    max_record_bytes: int | None = Field(
        default=None,
        ge=1024,
        description="The largest record (value, key and headers) a produce accepts; "
        "default: 64 MiB on SQLite and memory, 1,000,000 on Kafka (its brokers' default "
        "message.max.bytes; raise the broker's first)",
    )
    model_inline_max_bytes: int = Field(
        default=1024 * 1024,
        ge=0,
        description="Model bytes above this size go to the model store, the descriptor "
        "carrying a file:// location instead of the bytes",
    )
    model_store_dir: str | None = Field(
        default=None,
        description="Directory of content-addressed model files (default: <sqlite dir>/models); "
        "every scorer must be able to read it",
    )
    onnx_intra_op_threads: int = Field(default=1, ge=0, description="0: onnxruntime decides")
    skops_trusted_types: tuple[str, ...] = Field(
        default=(), description="Extra type names skops may load, beyond the built-in list"
    )
    answer_margin_ms: int | None = Field(
        default=None,
        ge=0,
        description="How long before a request's deadline the rendezvous takes its final "
        "decision, leaving that long for the answer to reach the caller (default: "
        "Settings.answer_margin)",
    )
    gateway_grace_ms: int = Field(
        default=100,
        ge=0,
        description="How long past a request's deadline the gateway still waits for the "
        "rendezvous' answer before it answers 'deadline missed' itself (the rendezvous "
        "normally answers first; this bounds the wait when it is down or lagging)",
    )
    commit_interval_ms: int = Field(
        default=100,
        ge=0,
        description="How often, at most, the scorers and the rendezvous commit their "
        "consumer offsets while records flow (they also commit when idle and when they "
        "stop); a crash re-reads about this much more, which they dedupe. 0: after "
        "every batch",
    )
    batch_wait_ms: float = Field(
        default=0.0,
        ge=0,
        description="How long a scorer waits, once a request is in hand, for more to fill "
        "a batch. 0 (the default): it scores what it holds at once, and batches form by "
        "themselves under load from what queued while it scored, so a lone request pays "
        "no wait; more trades that much latency for fuller batches",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO",
        description="The least severe log line that `serve` and `run` write to stderr "
        "(INFO: partitions taken over, models swapped, promotions; WARNING: failures "
        "the role recovers from)",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    archive_dir: Path | None = Field(
        default=None,
        description="Root of the Parquet archive (default: see Settings.archive_root)",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_capitals(cls, value: object) -> object:
        # MODELSTREAM_LOG_LEVEL=debug is as clear as DEBUG
        return value.upper() if isinstance(value, str) else value

    def answer_margin(self) -> int:
        """``answer_margin_ms`` when set, else by engine: 20 ms on Kafka, whose hop from the
        rendezvous back to a gateway takes several milliseconds (more under load), 5 ms
        on the in-process and SQLite engines."""
        if self.answer_margin_ms is not None:
            return self.answer_margin_ms
        return 20 if self.backplane.startswith("kafka://") else 5

    def retry_max_s(self) -> float:
        """The longest a group member backs off after a backplane failure: a third of the
        session timeout, and at most 5 s. On the engines without a broker a member that
        does not poll for a session timeout is dropped from its group, so a longer
        backoff would make its next commit fail again ("unknown member") and back it off
        longer still. (On Kafka the bound is :meth:`max_poll_interval`, longer.)"""
        return min(5.0, self.session_timeout_ms / 3000)

    def max_poll_interval(self) -> int:
        """``max_poll_interval_ms`` when set (at least the session timeout), else twice the
        session timeout: room for a slow step (a takeover on a starved machine) without
        a rebalance, while a rebalance waits at most that long for a member that died."""
        if self.max_poll_interval_ms is None:
            return 2 * self.session_timeout_ms
        return max(self.session_timeout_ms, self.max_poll_interval_ms)

    def archive_root(self) -> Path:
        """Where the archiver writes and readers read: ``archive_dir`` when set, else
        ``<dir>/archive`` for a ``sqlite://dir`` backplane, else ``./.modelstream/archive``.
        """
        if self.archive_dir is not None:
            return self.archive_dir
        if self.backplane.startswith("sqlite://") and len(self.backplane) > len("sqlite://"):
            # Kept next to the topics so one directory holds a machine's whole state.
            return Path(self.backplane[len("sqlite://") :]) / "archive"
        return Path(".modelstream") / "archive"
