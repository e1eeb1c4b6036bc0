from __future__ import annotations

import numpy as np
import pytest

from modelstream.models.refs import ModelRef
from modelstream.scoring.stats import LatencyHistogram, StatsBook
from modelstream.wire.scores import Score
from modelstream.wire.tensors import array_to_tensor


def test_histogram_quantiles_are_close_and_extremes_exact() -> None:
    rng = np.random.default_rng(0)
    values = rng.lognormal(mean=0.0, sigma=1.0, size=20_000)
    hist = LatencyHistogram()
    for v in values:
        hist.add(float(v))
    assert hist.count == values.size
    assert hist.min_ms == pytest.approx(values.min())
    assert hist.max_ms == pytest.approx(values.max())
    assert hist.mean_ms == pytest.approx(values.mean())
    for q in (0.5, 0.99):
        assert hist.quantile(q) == pytest.approx(np.quantile(values, q), rel=0.02)


def test_histogram_merge_equals_one_histogram() -> None:
    a, b, both = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for i in range(1, 500):
        (a if i % 2 else b).add(i / 10)
        both.add(i / 10)
    a.merge(b)
    assert (a.count, a.min_ms, a.max_ms) == (both.count, both.min_ms, both.max_ms)
    assert a.quantile(0.5) == both.quantile(0.5)
    assert LatencyHistogram().quantile(0.5) == 0.0


def test_book_counts_invocations_errors_and_since_per_version() -> None:
    book = StatsBook()
    gbm1, gbm2 = ModelRef("gbm", 1), ModelRef("gbm", 2)
    book.record(gbm1, 2.0, at=1000, n=3)
    book.record(gbm1, 4.0, at=900, ok=False)
    book.record(gbm2, 1.0, at=2000, role="challenger")
    one, two = book.snapshot()
    assert (one.ref, one.invocations, one.errors, one.since, one.last) == (gbm1, 4, 1, 900, 1000)
    assert (one.latency_min, one.latency_max, one.latency_mean) == (2.0, 4.0, 2.5)
    assert one.error_rate == 0.25
    assert two.role == "challenger" and two.invocations == 1
    assert book.get(gbm2) == two and book.get(ModelRef("x", 1)) is None
    assert one.to_json()["latency_ms"]["max"] == 4.0


def test_book_from_scores_matches_direct_recording() -> None:
    out = (array_to_tensor("y", np.zeros(1, np.float32)),)
    scores = [
        Score("r1", "gbm", 3, out, None, 1.5, 10, "champion", 2),
        Score("r2", "gbm", 3, out, None, 1.5, 11, "champion", 2),
        Score("r3", "gbm", 3, None, "model raised", 7.0, 12, "champion", 1),
    ]
    from_scores, direct = StatsBook(), StatsBook()
    from_scores.record_scores(scores)
    direct.record(ModelRef("gbm", 3), 1.5, at=10, n=2)
    direct.record(ModelRef("gbm", 3), 7.0, at=12, ok=False)
    a, b = from_scores.snapshot()[0], direct.snapshot()[0]
    assert a.invocations == b.invocations == 3 and a.errors == b.errors == 1
    assert (a.since, a.last, a.latency_p50, a.latency_p99) == (10, 12, b.latency_p50, b.latency_p99)


def test_a_batch_of_scores_counts_as_each_score_would_alone() -> None:
    out = (array_to_tensor("y", np.zeros(1, np.float32)),)
    batch = [Score(f"r{i}", "gbm", 3, out, None, 2.5, 100, "champion", 256) for i in range(256)]
    batch[7] = Score("r7", "gbm", 3, None, "invalid input", 2.5, 100, "champion", 256)
    batch += [Score(f"s{i}", "lr", 1, out, None, 0.5, 90 + i, "challenger", 1) for i in range(3)]
    together, alone = StatsBook(), StatsBook()
    together.record_scores(batch)
    for score in batch:
        alone.record_scores([score])
    assert together.snapshot() == alone.snapshot()
    gbm, lr = together.snapshot()
    assert (gbm.invocations, gbm.errors, gbm.latency_mean) == (256, 1, 2.5)
    assert (lr.invocations, lr.since, lr.last, lr.role) == (3, 90, 92, "challenger")
