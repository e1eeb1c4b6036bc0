"""The backplane port: the one interface every engine (memory, SQLite, Kafka) implements.

The contract, identical on every engine and proven by ``tests/backplane/test_contract.py``:

* **Topics** have a fixed number of partitions, set at creation. Producing to, or
  consuming from, a topic that does not exist creates it with the engine's default
  partition count. ``compacted`` topics additionally support :meth:`Backplane.read_compacted`.
* **Partitioning.** A record with an explicit ``partition`` goes there. A keyed record goes
  to ``murmur2(key) % partitions`` (Kafka's default partitioner, see
  :mod:`modelstream.backplane.partitioner`), so any Kafka client places it where we do.
  Unkeyed records are spread over the partitions.
* **Offsets** are dense and increasing per partition, starting at 0. Records of one
  partition are read in offset order.
* **Durability.** :meth:`Backplane.produce` returns only once every record in the batch is
  durable on the engine (SQLite: committed to the WAL; Kafka: acknowledged by the broker).
  A record whose produce call returned is never lost, whatever happens to the producer.
* **Consumers** without a group are assigned every partition of their topics and start
  at the beginning or the end (``start``). Consumers *with* a group share the partitions
  with the group's other live members; partitions are rebalanced when a member joins,
  closes, or dies: it stops polling for longer than the session timeout (on Kafka, whose
  clients heartbeat from a thread of their own, its process stops; a live process that
  stops polling is dropped after ``Settings.max_poll_interval()``, twice the session by
  default). In a group subscribed to several topics with the same partition count,
  partition ``p`` of every topic goes to the same member (co-partitioning). A member
  starts each newly assigned partition at the group's committed offset, or at ``start``
  when none is committed.
  Delivery is at-least-once: a record is redelivered until an offset past it is committed.
* **Assignment is eventually consistent.** :meth:`Consumer.assignment` may be empty until
  the first :meth:`Consumer.poll` returns, and :meth:`Consumer.poll` may return nothing
  while a group is (re)joining.
* **Seeking** applies to currently assigned partitions: to an offset, the beginning, the
  end, or the first record whose timestamp is at or after a given time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, Protocol, runtime_checkable

from modelstream.backplane.records import (
    Delivered,
    OutRecord,
    PartitionInfo,
    Record,
    TopicDescription,
    TopicPartition,
    TopicSpec,
)

StartFrom = Literal["earliest", "latest"]


@runtime_checkable
class Consumer(Protocol):
    """Reads records from one or more topics; one thread uses a consumer at a time."""

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        """Up to ``max_records`` records, waiting at most ``timeout`` seconds for the first.

        Returns an empty list on timeout. Records of one partition come in offset order.
        Advances the consumer's position past the records returned; nothing is committed.
        """
        ...

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit, for the consumer's group, the *next* offset to read per partition.

        With ``offsets`` of ``None``, commits the current position of every assigned
        partition. Without a group, raises :class:`~modelstream.errors.ConfigurationError`.
        """
        ...

    def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        """The group's committed offsets for ``partitions`` (``None`` where none is)."""
        ...

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this consumer currently reads."""
        ...

    def position(self, partition: TopicPartition) -> int:
        """The offset of the next record :meth:`poll` returns from ``partition``."""
        ...

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Make ``offset`` the next record read from an assigned ``partition``."""
        ...

    def seek_to_beginning(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Seek assigned ``partitions`` (default: all assigned) to their first record."""
        ...

    def seek_to_end(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Seek assigned ``partitions`` (default: all assigned) past their last record."""
        ...

    def seek_to_time(
        self, timestamp_ms: int, partitions: Iterable[TopicPartition] | None = None
    ) -> None:
        """Seek to the first record whose timestamp is ``>= timestamp_ms`` (or the end)."""
        ...

    def close(self) -> None:
        """Leave the group (its partitions move to other members) and free resources."""
        ...


@runtime_checkable
class Backplane(Protocol):
    """A set of partitioned, durable, replayable topics. Safe to share between threads."""

    @property
    def url(self) -> str:
        """The URL this backplane was opened from (without credentials)."""
        ...

    @property
    def max_record_bytes(self) -> int:
        """The largest record :meth:`produce` accepts (``records.record_size``: value, key
        and headers): ``Settings.max_record_bytes``, else the engine's default."""
        ...

    def create_topic(
        self, name: str, partitions: int | None = None, *, compacted: bool = False
    ) -> TopicSpec:
        """Create ``name`` if it does not exist, and return its spec.

        An existing topic is returned as it is (its partition count is not changed).
        """
        ...

    def delete_topic(self, name: str) -> None:
        """Delete ``name`` and its records; raises ``TopicNotFound`` if it does not exist."""
        ...

    def list_topics(self) -> list[TopicSpec]:
        """Every topic, sorted by name."""
        ...

    def partitions(self, name: str) -> tuple[PartitionInfo, ...]:
        """Each partition of ``name`` with its first readable and its end offset, in
        partition order; raises ``TopicNotFound``. The offsets alone, without the groups:
        a role that only needs where a topic ends calls this, whose cost does not grow
        with the number of consumer groups on the broker."""
        ...

    def group_offsets(self, group: str, topic: str) -> dict[int, int]:
        """``group``'s committed next offset per partition of ``topic``, for the
        partitions it has committed (``{}`` for a group that never committed there);
        raises ``TopicNotFound``. Reads this one group, not every group of the broker."""
        ...

    def describe_topic(self, name: str) -> TopicDescription:
        """Partitions with their offsets (as :meth:`partitions`), and every group with
        committed offsets and lag. On Kafka this reads every consumer group of the broker,
        so it is for operators and for roles that need the groups."""
        ...

    def set_group_offsets(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Set ``group``'s committed next offset per partition from outside the group, as
        an operator's offset reset does. For a group with no active member (a new one):
        its first member starts there. Other partitions' offsets are kept."""
        ...

    def produce(self, topic: str, records: Sequence[OutRecord]) -> list[Delivered]:
        """Append ``records`` to ``topic``; return once all are durable, in input order.

        Raises ``RecordTooLarge``, having written none of them, if any record is above
        :attr:`max_record_bytes`.
        """
        ...

    def consumer(
        self,
        topics: Sequence[str],
        *,
        group: str | None = None,
        start: StartFrom = "earliest",
    ) -> Consumer:
        """A new consumer of ``topics``; in ``group`` when given, else of every partition."""
        ...

    def read_compacted(self, topic: str) -> dict[bytes, Record]:
        """The latest record per key of ``topic`` as of now (unkeyed records are ignored)."""
        ...

    def close(self) -> None:
        """Release connections; consumers made by this backplane must be closed first."""
        ...
