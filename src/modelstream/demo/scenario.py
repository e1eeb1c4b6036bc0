"""The demo's models and deployment: real classifiers trained here, published as ONNX.

A champion (gradient boosting), a challenger (logistic regression) and a canary (a
decision tree) serve a synthetic credit-risk-like problem under a deadline. Half-way the
champion is retrained and the new version is swapped in while traffic flows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from modelstream.models.deployment import Deployment, Policy, PolicyKind
from modelstream.models.descriptor import Lineage, TrainingSpan
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.testing.sklearn import Dataset, fit, make_dataset, to_onnx

FEATURES = 8
CHAMPION, CHALLENGER, CANARY = "gbm", "logreg", "tree"


@dataclass(frozen=True)
class DemoModels:
    """What the demo published and deployed."""

    service: str
    data: Dataset
    champion: ModelRef
    challenger: ModelRef
    canary: ModelRef
    deployment: Deployment


def _publish(
    registry: Registry, service: str, name: str, *, kind: str, data: Dataset, seed: int, trees: int
) -> ModelRef:
    train = Dataset(data.x[:1500], data.y[:1500])
    model = fit(kind, train, seed=seed, trees=trees)  # type: ignore[arg-type]
    accuracy = float(np.mean(model.predict(data.x[1500:]) == data.y[1500:]))
    lineage = Lineage(
        created_at=0,
        created_by="modelstream demo",
        training=TrainingSpan(rows=len(train.y)),
        metrics={"holdout_accuracy": round(accuracy, 4)},
        tags={"kind": kind, "seed": str(seed)},
    )
    descriptor = registry.publish(
        service, name, to_onnx(model, FEATURES), format="onnx", lineage=lineage
    )
    return descriptor.ref


def setup(registry: Registry, service: str, deadline_ms: int, seed: int = 7) -> DemoModels:
    """Train and publish three models, and deploy them under ``deadline_ms``."""
    data = make_dataset(rows=2000, features=FEATURES, seed=seed)
    champion = _publish(registry, service, CHAMPION, kind="gbm", data=data, seed=seed, trees=30)
    challenger = _publish(
        registry, service, CHALLENGER, kind="logreg", data=data, seed=seed, trees=0
    )
    canary = _publish(registry, service, CANARY, kind="tree", data=data, seed=seed, trees=0)
    deployment = registry.deploy(
        service,
        champion,
        challengers=(challenger,),
        canary=canary,
        policy=Policy(kind=PolicyKind.PREFERENCE),
        deadline_ms=deadline_ms,
        reason="demo: initial deployment",
    )
    return DemoModels(service, data, champion, challenger, canary, deployment)


def retrain_champion(registry: Registry, models: DemoModels, seed: int) -> ModelRef:
    """Publish a retrained champion (more trees, another seed) and deploy it in place."""
    ref = _publish(
        registry, models.service, CHAMPION, kind="gbm", data=models.data, seed=seed, trees=60
    )
    registry.deploy(
        models.service,
        ref,
        challengers=(models.challenger,),
        canary=models.canary,
        reason=f"demo: retrained champion {ref} swapped in under load",
    )
    return ref


def rows(data: Dataset, count: int, seed: int) -> npt.NDArray[np.float32]:
    """``count`` request rows drawn from the dataset (with replacement)."""
    rng = np.random.default_rng(seed)
    return data.x[rng.integers(0, len(data.x), size=count)]
