"""The demo's first models: trained on a simulated history, built offline, then deployed.

:func:`setup` writes an hour of the fleet's past readings onto ``<service>.events`` (the
same topic the live fleet and the gateway's requests use), rebuilds their features
*offline* by replaying that log through :func:`modelstream.features.offline.build` -- the
engine the live featurizer runs, so what the models learn from is what they will be
served (no train/serve skew) -- and trains three classifiers on it: a champion (gradient
boosting), a challenger (logistic regression) and a canary (a shallow tree). Each is
published as ONNX with its holdout accuracy in its lineage (the monitor's quality
baseline) and its training reference (the ``monitoring.reference`` tag: the training
features and its holdout P(class 1), what the monitor measures drift against), and
deployed under a deadline, with the feature set and a fallback answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import orjson

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord
from modelstream.demo.fleet import Fleet, Reading
from modelstream.demo.training import Kind, fit
from modelstream.features import offline
from modelstream.features.definitions import FeatureSet
from modelstream.models.deployment import Deployment, Fallback, Policy, PolicyKind
from modelstream.models.descriptor import Lineage, TrainingSpan
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.monitoring.references import REFERENCE_TAG, reference_tag
from modelstream.training.convert import to_onnx
from modelstream.wire.topics import ServiceTopics

HISTORY_MINUTES = 90
CHAMPION, CHALLENGER, CANARY = "gbm", "logreg", "tree"
# Answered when no model has answered by the deadline: "no failure expected", marked
# fallback=true in the reply so a client can tell it from a model's answer.
FALLBACK = Fallback(
    outputs=(
        {"name": "label", "datatype": "INT64", "shape": [1], "data": [0]},
        {"name": "probabilities", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 0.5]},
    )
)


@dataclass(frozen=True)
class DemoModels:
    """What the demo published and deployed, and what the history held."""

    service: str
    champion: ModelRef
    challenger: ModelRef
    canary: ModelRef
    deployment: Deployment
    history_rows: int
    accuracy: dict[str, float]


def event_record(reading: Reading) -> OutRecord:
    """A reading as a record of ``<service>.events``: keyed by truck, at its event time."""
    return OutRecord(
        orjson.dumps(reading.fields()), reading.entity.encode(), (), reading.event_time
    )


def _training_rows(
    backplane: Backplane, topic: str, feature_set: FeatureSet, fleet: Fleet, until: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features (offline replay of ``topic``), labels and event times of the history rows
    whose truth is known by ``until`` (the horizon has passed) and that have every feature."""
    built = offline.build(feature_set, offline.topic_entries(backplane, topic), flush=False)
    xs, ys, ts = [], [], []
    for row in built.event_rows:
        t = int(row["event_time"])
        values = [row[name] for name in feature_set.names]
        if t + fleet.horizon_ms > until or any(v is None or math.isnan(float(v)) for v in values):
            continue
        xs.append(values)
        ys.append(fleet.label_of(str(row["entity"]), t))
        ts.append(t)
    order = np.argsort(np.asarray(ts), kind="stable")
    x = np.asarray(xs, dtype=np.float64)[order]
    return x, np.asarray(ys, dtype=np.int64)[order], np.asarray(ts, dtype=np.int64)[order]


def setup(
    backplane: Backplane,
    registry: Registry,
    service: str,
    fleet: Fleet,
    *,
    feature_set: FeatureSet,
    feature_set_ref: str,
    deadline_ms: int,
    now: int,
) -> DemoModels:
    """Write the history, train, publish and deploy (see the module docstring)."""
    topic = ServiceTopics(service).events
    backplane.create_topic(topic)
    start = now - HISTORY_MINUTES * fleet.minute_ms
    history = fleet.history(start, HISTORY_MINUTES)
    backplane.produce(topic, [event_record(r) for r in history])
    x, y, t = _training_rows(backplane, topic, feature_set, fleet, now)
    cut = int(len(y) * 0.75)  # time-ordered holdout: the last quarter
    refs: dict[str, ModelRef] = {}
    accuracy: dict[str, float] = {}
    kinds: tuple[tuple[str, Kind], ...] = (
        (CHAMPION, "gbm"),
        (CHALLENGER, "logreg"),
        (CANARY, "tree"),
    )
    for name, kind in kinds:
        model = fit(kind, x[:cut], y[:cut])
        acc = float(np.mean(model.predict(x[cut:]) == y[cut:]))
        accuracy[name] = acc
        reference = reference_tag(
            {f"features.{n}": x[:cut, i] for i, n in enumerate(feature_set.names)},
            scores=model.predict_proba(x[cut:])[:, 1],
        )
        refs[name] = _publish(
            registry,
            service,
            name,
            kind=kind,
            model=model,
            feature_set=feature_set,
            accuracy=acc,
            reference=reference,
            t=t,
            cut=cut,
            now=now,
        )
    deployment = registry.deploy(
        service,
        refs[CHAMPION],
        challengers=(refs[CHALLENGER],),
        canary=refs[CANARY],
        policy=Policy(kind=PolicyKind.PREFERENCE),
        deadline_ms=deadline_ms,
        reason=f"demo: first models, trained on {cut} rows of simulated history "
        f"(features rebuilt offline from {topic})",
        fallback=FALLBACK,
        feature_set=feature_set_ref,
    )
    return DemoModels(
        service,
        refs[CHAMPION],
        refs[CHALLENGER],
        refs[CANARY],
        deployment,
        len(y),
        accuracy,
    )


def _publish(
    registry: Registry,
    service: str,
    name: str,
    *,
    kind: Kind,
    model: object,
    feature_set: FeatureSet,
    accuracy: float,
    reference: str,
    t: np.ndarray,
    cut: int,
    now: int,
) -> ModelRef:
    lineage = Lineage(
        created_at=now,
        created_by="modelstream demo",
        training=TrainingSpan(start=int(t[0]), end=int(t[cut - 1]), rows=cut),
        metrics={"accuracy": round(accuracy, 4)},
        feature_set=feature_set.ref,
        tags={"kind": kind, REFERENCE_TAG: reference},
    )
    data = to_onnx(model, len(feature_set.names), input_name="features")
    return registry.publish(service, name, data, format="onnx", lineage=lineage).ref
