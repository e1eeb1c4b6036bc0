"""Topic and group administration over the Kafka admin API.

Keeps a cache of partition counts (producing a keyed record needs the count to place it
by ``murmur2``); a topic's partition count never changes through this engine, so the
cache is only dropped when a topic is deleted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTP
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

from modelstream.backplane.kafka import config
from modelstream.backplane.kafka.members import count_members
from modelstream.backplane.records import GroupInfo, TopicPartition, TopicSpec
from modelstream.errors import BackplaneUnavailable, ConfigurationError, TopicNotFound
from modelstream.settings import Settings


class KafkaAdmin:
    """Topics and groups of one cluster; thread-safe."""

    def __init__(self, brokers: str, settings: Settings) -> None:
        self._brokers = brokers
        self._settings = settings
        self._timeout = settings.connect_timeout_s
        self._client = AdminClient(config.common(brokers, settings))
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise ``BackplaneUnavailable`` unless the cluster answers within the timeout."""
        try:
            self._client.list_topics(timeout=self._timeout)
        except KafkaException as exc:
            raise BackplaneUnavailable(
                f"kafka broker {self._brokers} did not answer within "
                f"{self._timeout:g}s; check the address and that the broker runs"
            ) from exc
        finally:
            self._client.poll(0)  # hand queued librdkafka log lines to Python logging

    def _topics(self) -> dict[str, int]:
        try:
            meta = self._client.list_topics(timeout=self._timeout)
        except KafkaException as exc:
            raise config.fail("list topics", exc) from exc
        self._client.poll(0)
        return {
            name: len(topic.partitions)
            for name, topic in meta.topics.items()
            if topic.error is None and not name.startswith("__")
        }

    def _result(self, future: Any, action: str) -> Any:
        try:
            return future.result(timeout=self._timeout)
        except KafkaException as exc:
            raise config.fail(action, exc) from exc
        except TimeoutError as exc:
            self._renew()
            raise config.fail(action, exc) from exc

    def _renew(self) -> None:
        """Replace the client after a request it never answered.

        After its connections were reset (a broker that went away and came back, its
        port closed meanwhile), librdkafka's admin client can leave requests routed to
        the group coordinator unanswered for good, while it answers others: every
        ``describe groups`` then times out. A fresh client reconnects; the caller's
        retry goes through it.
        """
        with self._lock:
            self._client = AdminClient(config.common(self._brokers, self._settings))

    # -- topics ---------------------------------------------------------------------------

    def partitions(self, name: str) -> int:
        """The partition count of ``name``, creating it with the default when missing."""
        count = self._counts.get(name)
        if count is None:
            count = self.create(name).partitions
        return count

    def create(
        self, name: str, partitions: int | None = None, compacted: bool = False
    ) -> TopicSpec:
        """Create ``name`` unless it exists; return its spec (an existing one as it is)."""
        count = self._settings.default_partitions if partitions is None else partitions
        if count < 1:
            raise ConfigurationError(f"topic {name!r} needs at least 1 partition")
        existing = self._topics().get(name)
        if existing is None:
            topic_config = {"cleanup.policy": "compact"} if compacted else {}
            # Replication factor -1 is "the broker's default", right on any cluster size.
            new = NewTopic(name, num_partitions=count, replication_factor=-1, config=topic_config)
            future = self._client.create_topics([new], operation_timeout=self._timeout)[name]
            try:
                future.result(timeout=self._timeout)
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise config.fail(f"create topic {name!r}", exc) from exc
            existing = self._wait_visible(name)
        with self._lock:
            self._counts[name] = existing
        return TopicSpec(name, existing, self.compacted([name]).get(name, False))

    def _wait_visible(self, name: str) -> int:
        # Creation is asynchronous on a cluster: wait until metadata shows the topic.
        deadline = time.monotonic() + self._timeout
        while True:
            count = self._topics().get(name)
            if count:
                return count
            if time.monotonic() > deadline:
                raise BackplaneUnavailable(
                    f"topic {name!r} was created but did not appear within "
                    f"{self._timeout:g}s; check the broker's health"
                )
            time.sleep(0.05)

    def compacted(self, names: list[str]) -> dict[str, bool]:
        """Whether each topic's ``cleanup.policy`` includes ``compact``."""
        if not names:
            return {}
        resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
        futures = self._client.describe_configs(resources)
        result: dict[str, bool] = {}
        for resource, future in futures.items():
            entries = self._result(future, "describe topic configs")
            policy = entries.get("cleanup.policy")
            result[resource.name] = policy is not None and "compact" in str(policy.value)
        return result

    def all(self) -> list[TopicSpec]:
        counts = self._topics()
        flags = self.compacted(sorted(counts))
        return [TopicSpec(n, counts[n], flags.get(n, False)) for n in sorted(counts)]

    def spec(self, name: str) -> TopicSpec:
        """The spec of an existing topic; raises ``TopicNotFound``."""
        count = self._topics().get(name)
        if count is None:
            raise TopicNotFound(name)
        with self._lock:
            self._counts[name] = count
        return TopicSpec(name, count, self.compacted([name]).get(name, False))

    def delete(self, name: str) -> None:
        with self._lock:
            self._counts.pop(name, None)
        if name not in self._topics():
            raise TopicNotFound(name)
        future = self._client.delete_topics([name], operation_timeout=self._timeout)[name]
        try:
            future.result(timeout=self._timeout)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise TopicNotFound(name) from exc
            raise config.fail(f"delete topic {name!r}", exc) from exc
        deadline = time.monotonic() + self._timeout
        while name in self._topics() and time.monotonic() < deadline:
            time.sleep(0.05)

    # -- groups ---------------------------------------------------------------------------

    def set_offsets(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit ``offsets`` for ``group`` as an admin (the group must have no member)."""
        request = ConsumerGroupTopicPartitions(
            group, [KafkaTP(tp.topic, tp.partition, offset) for tp, offset in offsets.items()]
        )
        future = self._client.alter_consumer_group_offsets([request])[group]
        self._result(future, "set group offsets")

    def group_offsets(self, group: str, spec: TopicSpec) -> dict[int, int]:
        """``group``'s committed offsets on the partitions of ``spec`` that have one."""
        partitions = [KafkaTP(spec.name, p) for p in range(spec.partitions)]
        request = [ConsumerGroupTopicPartitions(group, partitions)]
        future = self._client.list_consumer_group_offsets(request)[group]
        offsets = self._result(future, "list group offsets")
        self._client.poll(0)
        return _committed_on(offsets, spec.name)

    def groups(self, topic: str, ends: dict[int, int]) -> list[GroupInfo]:
        """Every group with committed offsets on ``topic``: offsets, lag against ``ends``.

        A broker may hold hundreds of groups, most of them about other topics: their
        offsets are asked for all at once (the API takes one group per request), and only
        the groups with commits on ``topic`` are then described for their members."""
        listing = self._result(self._client.list_consumer_groups(), "list groups")
        names = sorted(g.group_id for g in listing.valid)
        ask = self._client.list_consumer_group_offsets
        asked = {name: ask([ConsumerGroupTopicPartitions(name)])[name] for name in names}
        committed: dict[str, dict[int, int]] = {}
        for name, future in asked.items():
            mine = _committed_on(self._result(future, "list group offsets"), topic)
            if mine:
                committed[name] = mine
        members = self._members(list(committed))
        self._client.poll(0)
        return [
            GroupInfo(
                name,
                offsets,
                {p: max(0, end - offsets.get(p, 0)) for p, end in ends.items()},
                members.get(name, 0),
            )
            for name, offsets in committed.items()
        ]

    def _members(self, names: list[str]) -> dict[str, int]:
        """How many members each of ``names`` has now."""
        if not names:
            return {}
        members: dict[str, int] = {}
        for name, future in self._client.describe_consumer_groups(names).items():
            count = len(self._result(future, "describe groups").members)
            if not count:  # see members.py: tansu answers the new API with no members
                count = count_members(self._brokers, name, self._timeout) or 0
            members[name] = count
        return members


def _committed_on(offsets: ConsumerGroupTopicPartitions, topic: str) -> dict[int, int]:
    """The committed offsets of ``topic`` in a group's offsets listing (none is negative)."""
    return {
        tp.partition: tp.offset
        for tp in offsets.topic_partitions or ()
        if tp.topic == topic and tp.offset >= 0
    }
