"""The demo's director, as a unit: when the world drifts, and the phases it reports."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.records import now_ms
from modelstream.demo.fleet import Fleet
from modelstream.demo.story import DRIFTED, SERVED, Milestone, Story
from modelstream.demo.traffic import Answer
from modelstream.settings import Settings


def _story(seen: list[Milestone]) -> Story:
    settings = Settings(backplane="memory://")
    serving = SimpleNamespace(backplane=open_backplane(settings.backplane, settings))
    models = SimpleNamespace(service="svc", champion="gbm@1")
    return Story(
        cast(Any, serving),
        cast(Any, models),
        Fleet(5, minute_ms=400),
        drift_at_s=0.0,
        retrain_by_s=1.0,
        min_labels=1,
        on_milestone=seen.append,
    )


def test_the_world_drifts_at_its_time_but_not_before_the_first_answer() -> None:
    seen: list[Milestone] = []
    story = _story(seen)
    t = now_ms()
    story._tick(t)  # past drift_at_s, but nothing served yet
    assert story.drifted_at_s is None and not story.reached(DRIFTED)

    story.milestone(SERVED, "first answers")
    story._tick(t + 400)
    assert story.drifted_at_s is not None
    assert [m.kind for m in seen] == [SERVED, DRIFTED]
    story._tick(t + 800)  # the world drifts once
    assert [m.kind for m in seen] == [SERVED, DRIFTED]


def test_the_phases_split_at_the_time_the_world_drifted() -> None:
    story = _story([])
    story.milestone(SERVED, "first answers")
    story._tick(now_ms())
    drifted = story.drifted_at_s
    assert drifted is not None
    story.truth.update({"early": 1, "late": 0})
    answers = {
        "early": Answer(drifted - 0.01, "gbm@1", 1, False, 3.0),
        "late": Answer(drifted + 0.01, "gbm@1", 1, False, 3.0),
    }
    before, after, promoted = story.quality(answers)
    assert (before.labelled, before.correct) == (1, 1)
    assert (after.labelled, after.correct) == (1, 0)
    assert promoted.labelled == 0
