"""Online updates: a River model learns from each label as it arrives.

Contract of :class:`OnlineTrainer`:

* it reads ``<service>.requests`` and ``<service>.labels`` in one consumer group,
  ``<service>.online-trainer``. Both topics are keyed by request id and co-partitioned,
  so a request and its label reach the same member;
* each request's numeric inputs (flattened as the archive does: ``input_0..``) are kept
  in a **bounded** map of recent requests (``max_pending``, oldest dropped first); a
  label *by request id* whose request is in the map is joined with it, and the model
  first predicts it (progressive validation: the ``progressive_accuracy`` metric) then
  ``learn_one``\\ s it. The topics are read independently, so a label that comes before
  its request waits in a second bounded map. Labels by entity, and labels pushed out of
  that map, are counted in ``unmatched`` and skipped;
* every ``every_updates`` updates, or ``every_seconds`` after the last publish when there
  was at least one update, it publishes a new version of ``name`` as a **signed** River
  model (``pack(model, features)``; River models are pickled, so
  :meth:`Registry.publish` requires ``sign_key`` and a deployment must trust its public
  key in ``trusted_keys``), checkpoints the model (skops, :mod:`.checkpoints`) under the
  new ref, and only then commits the consumed offsets: a crash replays from the last
  publish (requests consumed before it are lost from the map; their labels are then
  ``unmatched``);
* each published version carries the monitor's training reference (the
  ``monitoring.reference`` tag, :mod:`modelstream.monitoring.references`): the inputs of
  its last :data:`~modelstream.monitoring.references.REFERENCE_SAMPLE` updates, named as
  the monitor names the requests' tensors, and its progressive scores on them
  (P(class 1) of a binary classifier, else the numeric prediction, made before it
  learned each row);
* with ``warm_start``, a new trainer continues the newest checkpoint of ``name`` (what
  this trainer published last) instead of the ``model`` it was given; the published
  lineage names the parent version and carries the tag ``warm_start=true``.

Nothing read from a stream is ever unpickled: the model lives in memory and in the
trainer's own checkpoint files.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelstream.archive.rows import request_row
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import Record, TopicPartition, now_ms
from modelstream.clock import Clock, SystemClock
from modelstream.errors import ConfigurationError, DecodeError
from modelstream.models.descriptor import Lineage, ModelDescriptor
from modelstream.models.loaders.river import pack
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.monitoring.references import (
    REFERENCE_SAMPLE,
    REFERENCE_TAG,
    input_names,
    reference_tag,
)
from modelstream.settings import Settings
from modelstream.training.checkpoints import CheckpointStore, default_root
from modelstream.training.events import ONLINE_PUBLISHED, emit, trainer_id
from modelstream.wire.labels import Label, decode_label
from modelstream.wire.topics import ServiceTopics, check_name

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OnlineConfig:
    """Settings of an :class:`OnlineTrainer` (see the module doc)."""

    name: str
    sign_key: Path
    features: int | Sequence[str]
    every_updates: int | None = 1000
    every_seconds: float | None = None
    max_pending: int = 100_000
    warm_start: bool = False
    checkpoint_dir: Path | None = None

    def __post_init__(self) -> None:
        check_name("model", self.name)
        if self.every_updates is None and self.every_seconds is None:
            raise ConfigurationError("an online trainer needs every_updates or every_seconds")
        if self.every_updates is not None and self.every_updates < 1:
            raise ConfigurationError("every_updates must be 1 or more")
        if self.max_pending < 1:
            raise ConfigurationError("max_pending must be 1 or more")


class OnlineTrainer:
    """Learns a River model label by label and publishes it (see the module doc)."""

    def __init__(
        self,
        backplane: Backplane,
        settings: Settings,
        service: str,
        config: OnlineConfig,
        *,
        model: Any = None,
        clock: Clock | None = None,
    ) -> None:
        self._bp = backplane
        self._registry = Registry(backplane, settings)
        self._topics = ServiceTopics(service)
        self.config = config
        self._clock = clock or SystemClock()
        root = config.checkpoint_dir or default_root(settings)
        self.checkpoints = CheckpointStore(Path(root), settings)
        self.parent: ModelRef | None = None
        if config.warm_start:
            self.parent = self.checkpoints.latest(service, config.name)
            if self.parent is not None:
                model = self.checkpoints.load(service, self.parent)
        if model is None or not hasattr(model, "learn_one"):
            raise ConfigurationError(
                "an online trainer needs a River model (with learn_one) to start from"
            )
        self.model = model
        features = config.features
        self._names = (
            [str(i) for i in range(features)] if isinstance(features, int) else list(features)
        )
        self._pending: OrderedDict[str, list[float]] = OrderedDict()
        self._early: OrderedDict[str, Label] = OrderedDict()
        self._done: dict[TopicPartition, int] = {}
        # The monitor's names of the inputs (from the first request), and the recent
        # (inputs, progressive score) pairs: the published versions' training reference.
        self._monitor_names: list[str] | None = None
        self._recent: deque[tuple[list[float], float | None]] = deque(maxlen=REFERENCE_SAMPLE)
        for topic in (self._topics.requests, self._topics.labels):
            backplane.create_topic(topic)
        self._consumer = backplane.consumer(
            [self._topics.requests, self._topics.labels],
            group=f"{service}.online-trainer",
            start="earliest",
        )
        self._who = trainer_id("online-trainer")
        self._last_publish_ms = self._clock.now_ms()
        self.updates = self.updates_since_publish = self.unmatched = self.correct = 0
        self.published: list[ModelDescriptor] = []

    @property
    def service(self) -> str:
        return self._topics.service

    def step(self, timeout: float = 0.2, max_records: int = 1000) -> list[ModelDescriptor]:
        """Consume what arrived, learn from joined labels; return the versions published
        (a publish happens as soon as a trigger fires, between two records)."""
        out = []
        for record in self._consumer.poll(max_records=max_records, timeout=timeout):
            if record.topic == self._topics.requests:
                self._remember(record)
            else:
                self._learn(record)
            self._done[record.topic_partition] = record.offset + 1
            if self._due():
                out.append(self.publish())
        if self._due():
            out.append(self.publish())
        return out

    def _remember(self, record: Record) -> None:
        try:
            _, row = request_row(record)
        except DecodeError:
            return  # the archiver dead-letters it; an online model just cannot learn it
        if row["x"] is None or len(row["x"]) != len(self._names):
            return
        if self._monitor_names is None:
            self._monitor_names = input_names(row["inputs"], len(self._names))
        early = self._early.pop(row["request_id"], None)
        if early is not None:
            self._update(row["x"], early)
            return
        self._pending[row["request_id"]] = row["x"]
        while len(self._pending) > self.config.max_pending:
            self._pending.popitem(last=False)

    def _learn(self, record: Record) -> None:
        try:
            label = decode_label(record.value)
        except DecodeError:
            return
        if label.request_id is None:
            self.unmatched += 1
            return
        x = self._pending.pop(label.request_id, None)
        if x is None:
            # Topics are read independently: a label may come before its request.
            self._early[label.request_id] = label
            while len(self._early) > self.config.max_pending:
                self._early.popitem(last=False)
                self.unmatched += 1
            return
        self._update(x, label)

    def _update(self, x: list[float], label: Label) -> None:
        row = dict(zip(self._names, x, strict=True))
        predicted = self.model.predict_one(row)
        if predicted == label.value:
            self.correct += 1
        self._recent.append((x, self._score(row, predicted)))
        self.model.learn_one(row, label.value)
        self.updates += 1
        self.updates_since_publish += 1

    def _score(self, row: dict[Any, Any], predicted: object) -> float | None:
        """The score the published model gives ``row``, as the River loader computes it:
        P(class 1) of a classifier, else the prediction (see the module)."""
        from river import base  # a dependency of any River model this trainer holds

        if not isinstance(self.model, base.Classifier):
            return float(predicted) if isinstance(predicted, int | float) else None
        p = self.model.predict_proba_one(row)
        # As the loader: binary classes are True/False or 1/0 (True == 1 as a key).
        p1 = float(p.get(1, 0.0))
        p0 = float(p.get(0, 1.0 - p1 if p else 0.5))
        return p1 / (p0 + p1 or 1.0)

    def _reference(self) -> dict[str, str]:
        """The ``monitoring.reference`` tag of what was learned last (empty if unnamed)."""
        names = self._monitor_names
        if names is None or not self._recent:
            return {}
        inputs = {name: [x[i] for x, _ in self._recent] for i, name in enumerate(names)}
        scores = [s for _, s in self._recent if s is not None] or None
        return {REFERENCE_TAG: reference_tag(inputs, scores)}

    def _due(self) -> bool:
        if self.updates_since_publish == 0:
            return False
        every = self.config.every_updates
        if every is not None and self.updates_since_publish >= every:
            return True
        seconds = self.config.every_seconds
        return (
            seconds is not None and self._clock.now_ms() - self._last_publish_ms >= seconds * 1000
        )

    def publish(self) -> ModelDescriptor:
        """Publish the model now as the next version of ``name`` (signed), then commit."""
        previous = self.published[-1].ref if self.published else self.parent
        lineage = Lineage(
            created_at=now_ms(),
            created_by="online-trainer",
            metrics={
                "updates": float(self.updates),
                "progressive_accuracy": self.correct / self.updates if self.updates else 0.0,
                "unmatched_labels": float(self.unmatched),
            },
            parent_version=previous.version if previous is not None else None,
            tags={
                "online": "true",
                "warm_start": str(previous is not None).lower(),
                **self._reference(),
            },
        )
        descriptor = self._registry.publish(
            self.service,
            self.config.name,
            pack(self.model, self._names),
            format="river",
            sign_key=self.config.sign_key,
            lineage=lineage,
        )
        self.checkpoints.save(self.service, descriptor.ref, self.model)
        # Commit only what was learned: records later in the same poll are not yet in it.
        mine = {tp: off for tp, off in self._done.items() if tp in self._consumer.assignment()}
        if mine:
            self._consumer.commit(mine)
        self.published.append(descriptor)
        self.updates_since_publish = 0
        self._last_publish_ms = self._clock.now_ms()
        emit(
            self._bp,
            self.service,
            ONLINE_PUBLISHED,
            model=descriptor.name,
            version=descriptor.version,
            previous=previous,
            error=None,
            timings_ms={},
            who=self._who,
        )
        return descriptor

    def close(self) -> None:
        """Leave the group; what was learned since the last publish is not kept."""
        self._consumer.close()
