"""The shared model contract types: refs, schemas, deployment roles and preference."""

from __future__ import annotations

import numpy as np
import pytest

from modelstream.errors import ConfigurationError, SchemaMismatch
from modelstream.models.deployment import (
    Deployment,
    LiveModel,
    Policy,
    Role,
    lane_name,
    split_choice,
)
from modelstream.models.refs import ModelRef
from modelstream.models.schema import ModelSchema, TensorSpec


def test_refs_parse_and_print_as_name_at_version() -> None:
    ref = ModelRef.parse("gbm@12")
    assert ref == ModelRef("gbm", 12)
    assert str(ref) == "gbm@12"
    assert ref.key == b"gbm@12"


@pytest.mark.parametrize("text", ["gbm", "gbm@", "gbm@x", "gbm@0", "@3", "a b@1"])
def test_bad_refs_say_the_expected_form(text: str) -> None:
    with pytest.raises(ConfigurationError, match=r"NAME@VERSION|name"):
        ModelRef.parse(text)


SCHEMA = ModelSchema(
    inputs=(TensorSpec("input", "FP32", (-1, 4)),),
    outputs=(TensorSpec("label", "INT64", (-1,)),),
)


def test_schema_accepts_any_batch_size_and_names_a_wrong_input() -> None:
    SCHEMA.check_inputs({"input": np.zeros((7, 4), np.float32)})
    with pytest.raises(SchemaMismatch, match=r"shape \[-1, 4\], got FP32 of shape \[7, 3\]"):
        SCHEMA.check_inputs({"input": np.zeros((7, 3), np.float32)})
    with pytest.raises(SchemaMismatch, match="must be FP32"):
        SCHEMA.check_inputs({"input": np.zeros((1, 4), np.float64)})
    with pytest.raises(SchemaMismatch, match="'input' is missing"):
        SCHEMA.check_inputs({"x": np.zeros((1, 4), np.float32)})
    assert ModelSchema.from_json(SCHEMA.to_json()) == SCHEMA


def test_preference_order_ranks_roles_and_never_includes_canary_or_decoy() -> None:
    deployment = Deployment(
        service="s",
        models=(
            LiveModel(ModelRef("c", 1), Role.CANARY),
            LiveModel(ModelRef("b", 1), Role.CHALLENGER),
            LiveModel(ModelRef("d", 1), Role.DECOY),
            LiveModel(ModelRef("a", 1), Role.CHAMPION),
        ),
    )
    assert deployment.preference_order() == ("a@1", "b@1")
    assert deployment.champion is not None and deployment.champion.ref.name == "a"
    explicit = Deployment("s", deployment.models, policy=Policy(order=("b", "c", "a")))
    assert explicit.preference_order() == ("b@1", "a@1")
    assert not Role.CANARY.choosable and Role.SHADOW.choosable


def two_versions() -> Deployment:
    return Deployment(
        service="s",
        models=(
            LiveModel(ModelRef("gbm", 3), Role.CHAMPION),
            LiveModel(ModelRef("gbm", 4), Role.CHALLENGER),
            LiveModel(ModelRef("gbm", 5), Role.SHADOW),
            LiveModel(ModelRef("lr", 1), Role.DECOY),
            LiveModel(ModelRef("lr", 2), Role.DECOY),
        ),
    )


def test_lanes_give_each_name_s_best_role_the_bare_name_and_the_others_their_ref() -> None:
    d = two_versions()
    lanes = {lane: str(m.ref) for lane, m in d.lanes().items()}
    # gbm: the champion holds lane gbm; lr: a tie of roles goes to the highest version.
    assert lanes == {
        "gbm": "gbm@3",
        "gbm@4": "gbm@4",
        "gbm@5": "gbm@5",
        "lr@1": "lr@1",
        "lr": "lr@2",
    }
    assert d.lane_of(ModelRef("gbm", 4)) == "gbm@4" and d.lane_of("gbm@9") is None
    assert lane_name("gbm@4") == "gbm" == lane_name("gbm")
    assert d.live("gbm") is d.live_ref("gbm@3") and d.live("nope") is None
    assert d.resolve("gbm@5") is d.live_ref(ModelRef("gbm", 5))


def test_policy_order_takes_names_and_refs_and_returns_refs() -> None:
    d = two_versions()
    assert d.preference_order() == ("gbm@3", "gbm@4", "gbm@5")
    by_name = Deployment("s", d.models, policy=Policy(order=("gbm",)))
    assert by_name.preference_order() == ("gbm@3", "gbm@4", "gbm@5")
    by_ref = Deployment("s", d.models, policy=Policy(order=("gbm@5", "lr@1", "gbm")))
    assert by_ref.preference_order() == ("gbm@5", "gbm@3", "gbm@4")


def test_a_split_is_stable_per_entity_and_follows_the_weights() -> None:
    models = (
        LiveModel(ModelRef("a", 1), Role.CHAMPION, weight=0.75),
        LiveModel(ModelRef("b", 1), Role.CHALLENGER, weight=0.25),
        LiveModel(ModelRef("c", 1), Role.CHALLENGER, weight=0.0),
    )
    d = Deployment("s", models)
    entities = [f"user-{i}" for i in range(4000)]
    chosen = [split_choice(d, e) for e in entities]
    assert chosen == [split_choice(d, e) for e in entities]  # stable
    share = chosen.count("b@1") / len(chosen)
    assert 0.22 < share < 0.28 and "c@1" not in chosen
    # Growing b's share keeps every entity b already had.
    grown = Deployment(
        "s",
        (
            LiveModel(ModelRef("a", 1), Role.CHAMPION, weight=0.5),
            LiveModel(ModelRef("b", 1), Role.CHALLENGER, weight=0.5),
        ),
    )
    assert all(
        split_choice(grown, e) == "b@1" for e, c in zip(entities, chosen, strict=True) if c == "b@1"
    )
    none = Deployment("s", tuple(LiveModel(m.ref, m.role, weight=0.0) for m in models))
    assert split_choice(none, "x") is None
