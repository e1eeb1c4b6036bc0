"""Online updates: a River model learns label by label and publishes signed versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.records import OutRecord
from modelstream.clock import ManualClock
from modelstream.errors import ConfigurationError, SignatureError
from modelstream.models.formats import load_verified
from modelstream.models.integrity import generate_keys
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.models.store import fetch_bytes
from modelstream.settings import Settings
from modelstream.training.online import OnlineConfig, OnlineTrainer
from modelstream.wire.labels import Label
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.tensors import array_to_tensor

from .helpers import SERVICE, T0, concept

pytestmark = pytest.mark.integration


def send(bp: object, x: object, y: object, first: int) -> None:
    requests, labels = [], []
    for i in range(len(x)):  # type: ignore[arg-type]
        rid, at = f"o{first + i}", T0 + (first + i) * 1000
        tensor = array_to_tensor("input", x[i : i + 1])  # type: ignore[index]
        requests.append(InferenceRequest(rid, SERVICE, at, at + 100, (tensor,)))
        labels.append(Label(SERVICE, int(y[i]), at + 500, request_id=rid))  # type: ignore[index]
    bp.produce(f"{SERVICE}.requests", [OutRecord(r.encode(), r.key) for r in requests])  # type: ignore[attr-defined]
    bp.produce(f"{SERVICE}.labels", [OutRecord(lb.encode(), lb.key) for lb in labels])  # type: ignore[attr-defined]


def drain(trainer: OnlineTrainer) -> list[object]:
    published = []
    for _ in range(50):  # bounded: each step reads up to 1000 records
        batch = trainer.step(timeout=0.2)
        published.extend(batch)
        if not batch and published:
            break
    return published


def test_online_updates_publish_signed_versions_the_loader_accepts(tmp_path: Path) -> None:
    from river import compose, linear_model, preprocessing

    settings = Settings(backplane=f"sqlite://{tmp_path / 'state'}")
    bp = open_backplane(settings.backplane, settings)
    keys = generate_keys(tmp_path / "keys")
    config = OnlineConfig("online", keys.private_path, features=4, every_updates=200)
    model = compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
    trainer = OnlineTrainer(bp, settings, SERVICE, config, model=model, clock=ManualClock())
    try:
        x, y = concept(400, seed=4)
        send(bp, x, y, 0)
        published = drain(trainer)
        assert [d.ref for d in published] == [ModelRef("online", 1), ModelRef("online", 2)]  # type: ignore[attr-defined]
        latest = published[-1]
        assert latest.signature is not None and latest.key_id == keys.key_id  # type: ignore[attr-defined]
        assert latest.lineage.parent_version == 1 and latest.lineage.metrics["updates"] == 400  # type: ignore[attr-defined]
        assert latest.lineage.metrics["progressive_accuracy"] > 0.75  # type: ignore[attr-defined]
        registry = Registry(bp, settings)
        registry.deploy(SERVICE, latest.ref, trusted_keys={keys.key_id: keys.public_key})  # type: ignore[attr-defined]
        d = registry.descriptor(SERVICE, ModelRef("online", 2))
        loaded = load_verified(d, fetch_bytes(d), registry.deployment(SERVICE))
        out = loaded.predict({"input": x[:50]})
        assert (out["label"] == y[:50]).mean() > 0.75
        loaded.close()
        untrusting = registry.deployment(SERVICE).__class__(service=SERVICE, models=())
        with pytest.raises(SignatureError):
            load_verified(d, fetch_bytes(d), untrusting)
    finally:
        trainer.close()
    # A restarted trainer with warm start continues the newest checkpoint.
    warm = OnlineConfig("online", keys.private_path, features=4, every_updates=50, warm_start=True)
    again = OnlineTrainer(bp, settings, SERVICE, warm, clock=ManualClock())
    try:
        assert again.parent == ModelRef("online", 2)
        send(bp, *concept(60, seed=5), 1000)
        descriptor = drain(again)[0]
        assert descriptor.ref == ModelRef("online", 3)  # type: ignore[attr-defined]
        assert descriptor.lineage.parent_version == 2  # type: ignore[attr-defined]
        assert descriptor.lineage.tags["warm_start"] == "true"  # type: ignore[attr-defined]
    finally:
        again.close()
        bp.close()


def test_online_trainer_needs_a_model_and_a_trigger(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="every_updates or every_seconds"):
        OnlineConfig("m", tmp_path / "k", features=2, every_updates=None)
    settings = Settings(backplane="memory://")
    bp = open_backplane("memory://", settings)
    try:
        with pytest.raises(ConfigurationError, match="River model"):
            OnlineTrainer(bp, settings, SERVICE, OnlineConfig("m", tmp_path / "k", features=2))
    finally:
        bp.close()


def test_every_t_seconds_publishes_what_was_learned_with_its_reference(tmp_path: Path) -> None:
    from river import compose, linear_model, preprocessing

    from modelstream.monitoring.references import reference_of

    settings = Settings(backplane="memory://")
    bp = open_backplane("memory://", settings)
    keys = generate_keys(tmp_path / "keys")
    config = OnlineConfig(
        "online",
        keys.private_path,
        features=4,
        every_updates=None,
        every_seconds=5,
        checkpoint_dir=tmp_path / "checkpoints",
    )
    model = compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
    clock = ManualClock()
    trainer = OnlineTrainer(bp, settings, SERVICE, config, model=model, clock=clock)
    try:
        x, y = concept(60, seed=6)
        send(bp, x, y, 0)
        for _ in range(20):
            assert trainer.step(timeout=0.05) == []
            if trainer.updates == 60:
                break
        assert trainer.updates == 60
        clock.advance(4_999)  # 5 s after the last publish (the start) minus 1 ms
        assert trainer.step(timeout=0.05) == []
        assert Registry(bp, settings).descriptors(SERVICE) == []
        clock.advance(1)
        [published] = trainer.step(timeout=0.05)
        assert published.ref == ModelRef("online", 1)
        assert published.lineage.metrics["updates"] == 60
        clock.advance(60_000)  # nothing learned since: no publish, however long
        assert trainer.step(timeout=0.05) == [] and len(trainer.published) == 1
        # The monitor's reference: the 60 learned rows, named as the monitor names the
        # requests' tensor "input", and the model's progressive P(class 1) on them.
        reference = reference_of(published)
        assert sorted(reference.inputs) == [f"input[{i}]" for i in range(4)]
        # (in the order learned: partition by partition)
        assert sorted(reference.inputs["input[2]"]) == pytest.approx(sorted(x[:, 2]), rel=1e-5)
        assert reference.scores is not None and len(reference.scores) == 60
        assert all(0 <= s <= 1 for s in reference.scores) and len(set(reference.scores)) > 10
    finally:
        trainer.close()
        bp.close()
