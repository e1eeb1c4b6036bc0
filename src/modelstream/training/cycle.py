"""One training cycle: archive window -> training function -> ONNX -> holdout -> publish.

:func:`run_cycle` is the body of :meth:`Trainer.run_once`, kept apart from the trainer's
triggers and threads. In order:

1. read the labelled window (``ArchiveReader.joined(..., labelled_only=True)``) and build
   the training frame (:mod:`.frame`); fewer than ``min_rows`` rows: skip;
2. split off the time-ordered holdout (the last ``holdout_fraction``);
3. with ``warm_start``, read the parent estimator (the newest published version of the
   output name that this trainer checkpointed) from the checkpoint store;
4. call the training function on the training part, convert the estimator to ONNX;
5. load the ONNX through ``load_verified`` (as a scorer would) and score the holdout;
   evaluate against the champion (:mod:`.evaluate`);
6. if accepted and ``publish``: ``Registry.publish`` with the lineage (training span and
   rows, holdout metrics of both models, parent version, feature set, tags
   ``champion``, ``warm_start``, ``function``), checkpoint the estimator under the new
   ref, and with ``deploy_as_challenger`` add it to the deployment as a challenger.

``CycleResult.timings_ms`` has one lap per step, in milliseconds: ``read``, ``parent``
(reading the warm-start parent; about 0 without warm start), ``train`` (the training
function alone), ``convert``, ``evaluate`` and ``publish``.

Every cycle that gets as far as training ends with one record on
``<service>.model-events`` (:mod:`.events`): ``retrain_published`` or
``retrain_rejected`` with the reason (also ``retrain_skipped`` when the window is too
small).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from modelstream.archive.reader import ArchiveReader
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import now_ms
from modelstream.errors import ConfigurationError, ServiceNotFound
from modelstream.features.spec import lineage_ref
from modelstream.models.deployment import Deployment, Role
from modelstream.models.descriptor import Lineage, ModelDescriptor, TrainingSpan
from modelstream.models.formats import inspect_bytes, load_verified
from modelstream.models.integrity import sha256_hex
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.models.store import fetch_bytes
from modelstream.settings import Settings
from modelstream.training.checkpoints import CheckpointStore
from modelstream.training.config import TrainerConfig
from modelstream.training.convert import to_onnx
from modelstream.training.evaluate import Evaluation, archived_scores, evaluate, scores_of
from modelstream.training.events import PUBLISHED, REJECTED, SKIPPED, emit
from modelstream.training.frame import TrainingFrame, build_frame, split_holdout
from modelstream.training.function import TrainingFunction, check_fitted
from modelstream.training.reference import with_reference

# (service, start ms, end ms) -> the labelled joined window, as ArchiveReader.joined.
Source = Callable[[str, int | None, int | None], pd.DataFrame]


@dataclass(frozen=True)
class CycleResult:
    """What one cycle did. ``published`` is the new descriptor, or None with ``reason``."""

    published: ModelDescriptor | None
    reason: str
    rows: int
    evaluation: Evaluation | None = None
    parent: ModelRef | None = None
    deployed: bool = False
    estimator: Any = None
    timings_ms: dict[str, float] = dataclasses.field(default_factory=dict)


def _utc(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


class _Laps:
    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self._last = time.perf_counter()

    def __call__(self, step: str) -> None:
        now = time.perf_counter()
        self.marks[step] = round((now - self._last) * 1000, 3)
        self._last = now


def run_cycle(
    backplane: Backplane,
    settings: Settings,
    service: str,
    *,
    config: TrainerConfig,
    function: TrainingFunction,
    checkpoints: CheckpointStore,
    start_ms: int | None,
    end_ms: int | None,
    who: str,
    source: Source | None = None,
) -> CycleResult:
    """One cycle (see the module doc); raises ``ConfigurationError`` on operator errors.

    ``source`` reads the labelled joined window (default: :class:`ArchiveReader`); the
    Spark trainer (:mod:`.spark`) passes its own.
    """
    laps = _Laps()
    registry = Registry(backplane, settings)
    try:
        deployment: Deployment | None = registry.deployment(service)
    except ServiceNotFound:
        deployment = None
    champion = deployment.champion.ref if deployment and deployment.champion else None
    if config.feature_set is None and deployment is not None and deployment.feature_set:
        # the model will score featurized requests: its lineage names that feature set
        config = dataclasses.replace(config, feature_set=lineage_ref(deployment.feature_set))
    output = config.output_for(champion.name if champion else None)
    if source is None:
        joined = ArchiveReader(settings.archive_root()).joined(
            service, _utc(start_ms), _utc(end_ms), labelled_only=True
        )
    else:
        joined = source(service, start_ms, end_ms)
    frame = build_frame(joined, config.inputs)
    laps("read")
    published = [d for d in registry.descriptors(service) if d.name == output]
    version = max((d.version for d in published), default=0) + 1
    previous = published[-1].ref if published else None
    if frame.rows < config.min_rows:
        reason = f"{frame.rows} labelled rows in the window, fewer than min_rows {config.min_rows}"
        emit(
            backplane,
            service,
            SKIPPED,
            model=output,
            version=version,
            previous=previous,
            error=reason,
            timings_ms=laps.marks,
            who=who,
        )
        return CycleResult(None, reason, frame.rows, timings_ms=laps.marks)
    train, holdout = split_holdout(frame, config.holdout_fraction)
    parent_ref, parent = _parent(config, checkpoints, service, output, previous)
    laps("parent")  # apart from "train": reading the parent is not training it
    estimator = check_fitted(function.spec, function(train.frame.copy(), parent))
    laps("train")
    data = to_onnx(estimator, len(train.columns), input_name=train.tensor_name)
    laps("convert")
    candidate = ModelRef(output, version)
    evaluation = _evaluate(
        registry,
        settings,
        service,
        config=config,
        deployment=deployment,
        joined=joined,
        holdout=holdout,
        data=data,
        candidate=candidate,
    )
    laps("evaluate")
    if not evaluation.accepts(config.margin):
        reason = evaluation.explain(config.margin)
        emit(
            backplane,
            service,
            REJECTED,
            model=output,
            version=version,
            previous=previous,
            error=reason,
            timings_ms=laps.marks,
            who=who,
        )
        return CycleResult(
            None,
            reason,
            train.rows,
            evaluation,
            parent_ref,
            estimator=estimator,
            timings_ms=laps.marks,
        )
    if not config.publish:
        reason = f"not published (publish is off); {evaluation.explain(config.margin)}"
        return CycleResult(
            None,
            reason,
            train.rows,
            evaluation,
            parent_ref,
            estimator=estimator,
            timings_ms=laps.marks,
        )
    lineage = _lineage(
        config,
        function,
        train,
        evaluation=evaluation,
        champion=champion,
        previous=previous,
        parent=parent_ref,
    )
    lineage = with_reference(lineage, joined, train, evaluation)  # the monitor's reference
    descriptor = registry.publish(
        service,
        output,
        data,
        format="onnx",
        version=version,
        sign_key=config.sign_key,
        lineage=lineage,
    )
    checkpoints.save(service, descriptor.ref, estimator)
    deployed = False
    if config.deploy_as_challenger:
        deploy_challenger(registry, service, deployment, descriptor.ref)
        deployed = True
    laps("publish")
    reason = evaluation.explain(config.margin)
    emit(
        backplane,
        service,
        PUBLISHED,
        model=output,
        version=version,
        previous=previous,
        error=None,
        timings_ms=laps.marks,
        who=who,
    )
    return CycleResult(
        descriptor, reason, train.rows, evaluation, parent_ref, deployed, estimator, laps.marks
    )


def _parent(
    config: TrainerConfig,
    checkpoints: CheckpointStore,
    service: str,
    output: str,
    previous: ModelRef | None,
) -> tuple[ModelRef | None, Any]:
    """The warm-start parent: the previous version's checkpoint, else the newest one."""
    if not config.warm_start:
        return None, None
    ref = (
        previous if previous and previous.version in checkpoints.versions(service, output) else None
    )
    ref = ref or checkpoints.latest(service, output)
    if ref is None:
        return None, None
    return ref, checkpoints.load(service, ref)


def _evaluate(
    registry: Registry,
    settings: Settings,
    service: str,
    *,
    config: TrainerConfig,
    deployment: Deployment | None,
    joined: Any,
    holdout: TrainingFrame,
    data: bytes,
    candidate: ModelRef,
) -> Evaluation:
    schema = inspect_bytes("onnx", data, settings=settings)
    provisional = ModelDescriptor(
        service,
        candidate.name,
        candidate.version,
        "onnx",
        sha256_hex(data),
        schema,
        Lineage(created_at=now_ms()),
    )
    trust = Deployment(service=service, models=())
    model = load_verified(provisional, data, trust, settings=settings)
    try:
        new_scores = scores_of(model, holdout.tensor_name, holdout.x)
    finally:
        model.close()
    champion = deployment.champion.ref if deployment and deployment.champion else None
    if champion is None or deployment is None:
        return evaluate(holdout, (candidate, new_scores), None, seed=config.seed)
    old = archived_scores(joined, champion, holdout.request_ids)
    source = "archive"
    if old is None or config.champion_scores == "rescore":
        old, source = _rescore(registry, settings, deployment, champion, holdout), "rescore"
    return evaluate(holdout, (candidate, new_scores), (champion, old, source), seed=config.seed)


def _rescore(
    registry: Registry,
    settings: Settings,
    deployment: Deployment,
    champion: ModelRef,
    holdout: TrainingFrame,
) -> Any:
    descriptor = registry.descriptor(deployment.service, champion)
    model = load_verified(descriptor, fetch_bytes(descriptor), deployment, settings=settings)
    try:
        if len(model.schema.inputs) != 1:
            raise ConfigurationError(
                f"cannot rescore the holdout with champion {champion}: it takes "
                f"{len(model.schema.inputs)} inputs; use champion_scores='archive'"
            )
        return scores_of(model, model.schema.inputs[0].name, holdout.x)
    except ConfigurationError:
        raise
    except Exception as exc:  # the champion may take other inputs than the candidate
        raise ConfigurationError(
            f"cannot rescore the holdout with champion {champion} ({exc}); it must take the "
            "same inputs as the trainer's columns, or have archived scores in the window"
        ) from None
    finally:
        model.close()


def _lineage(
    config: TrainerConfig,
    function: TrainingFunction,
    train: TrainingFrame,
    *,
    evaluation: Evaluation,
    champion: ModelRef | None,
    previous: ModelRef | None,
    parent: ModelRef | None,
) -> Lineage:
    start, end = train.span()
    tags = {"warm_start": "true" if parent is not None else "false", "function": function.spec}
    if champion is not None:
        tags["champion"] = str(champion)
    tags["columns"] = ",".join(train.columns)
    before = parent or previous
    return Lineage(
        created_at=now_ms(),
        created_by="trainer",
        training=TrainingSpan(start=start, end=end, rows=train.rows),
        metrics=dict(evaluation.metrics),
        parent_version=before.version if before is not None else None,
        feature_set=config.feature_set,
        tags=tags,
    )


def deploy_challenger(
    registry: Registry, service: str, deployment: Deployment | None, ref: ModelRef
) -> None:
    """Add ``ref`` as a challenger beside the champion; without a deployment (or a
    champion), deploy it as the champion.

    Other live versions of ``ref``'s name that are not the champion (an older retrain,
    or the champion demoted by the last promotion) are replaced by it, so retraining
    keeps one challenger per name rather than piling versions up. Canary, decoys,
    shadows, other names' challengers, the policy and the deadline are kept.
    """
    if deployment is None or deployment.champion is None:
        registry.deploy(service, ref, reason=f"trainer: first model {ref}")
        return
    champion = deployment.champion.ref
    if ref == champion:
        raise ConfigurationError(f"{ref} is already the champion of {service}")
    by_role: dict[Role, list[ModelRef]] = {role: [] for role in Role}
    for live in deployment.models:
        if live.role is Role.CHAMPION or live.ref.name != ref.name:
            by_role[live.role].append(live.ref)
    registry.deploy(
        service,
        champion,
        challengers=[*by_role[Role.CHALLENGER], ref],
        canary=by_role[Role.CANARY][0] if by_role[Role.CANARY] else None,
        decoys=by_role[Role.DECOY],
        shadows=by_role[Role.SHADOW],
        reason=f"trainer: {ref} as a challenger beside champion {champion}",
    )
