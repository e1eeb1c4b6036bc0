"""Automatic promotion on the archive's evidence: a challenger that wins with
significance on enough labelled requests is promoted, with the evidence as the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelstream.archive.archiver import Archiver
from modelstream.archive.reader import ArchiveReader
from modelstream.backplane.memory import MemoryBackplane
from modelstream.models.deployment import Role
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.rendezvous.promotion import auto_promote
from modelstream.settings import Settings
from tests.archive.helpers import produce, traffic

GBM, LR = ModelRef("gbm", 1), ModelRef("lr", 1)


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    from modelstream.testing.sklearn import onnx_classifier

    data, _ = onnx_classifier("logreg", features=4, rows=100)
    return data


def test_a_challenger_that_wins_with_significance_is_promoted(
    tmp_path: Path, onnx_bytes: bytes
) -> None:
    bp = MemoryBackplane()
    try:
        produce(bp, "svc", traffic("svc", 300, accuracy=(0.92, 0.6), seed=3))
        archiver = Archiver(bp, "svc", tmp_path / "archive", flush_rows=5000, flush_seconds=60)
        while archiver.step(timeout=0.05):
            pass
        archiver.close()
        reader = ArchiveReader(tmp_path / "archive")
        settings = Settings(backplane="memory://", model_store_dir=str(tmp_path / "store"))
        registry = Registry(bp, settings)
        for name in ("gbm", "lr"):
            registry.publish("svc", name, onnx_bytes, format="onnx")
        registry.deploy("svc", LR, challengers=[GBM])

        few = auto_promote(registry, reader, "svc", min_labels=1000)
        assert not few.promote and "300 labelled requests < 1000" in few.reason
        dry = auto_promote(registry, reader, "svc", min_labels=100, dry_run=True)
        assert dry.promote and dry.challenger == GBM and dry.deployment is None
        assert registry.deployment("svc").champion.ref == LR  # type: ignore[union-attr]

        done = auto_promote(registry, reader, "svc", min_labels=100, alpha=0.01)
        assert done.deployment is not None
        now = registry.deployment("svc")
        assert {str(m.ref): m.role for m in now.models} == {
            "gbm@1": Role.CHAMPION,
            "lr@1": Role.CHALLENGER,
        }
        assert now.reason.startswith("auto-promote gbm@1 over lr@1: accuracy")
        assert "on 300 labelled requests" in now.reason and "p = " in now.reason

        # Now the champion is the better one: nothing to promote, and the reason says so.
        again = auto_promote(registry, reader, "svc", min_labels=100)
        assert not again.promote and "the champion wins" in again.reason
        assert registry.deployment("svc").revision == now.revision
    finally:
        bp.close()
