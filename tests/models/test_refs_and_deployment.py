"""The shared model contract types: refs, schemas, deployment roles and preference."""

from __future__ import annotations

import numpy as np
import pytest

from modelstream.errors import ConfigurationError, SchemaMismatch
from modelstream.models.deployment import Deployment, LiveModel, Policy, Role
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
    assert deployment.preference_order() == ("a", "b")
    assert deployment.champion is not None and deployment.champion.ref.name == "a"
    explicit = Deployment("s", deployment.models, policy=Policy(order=("b", "c", "a")))
    assert explicit.preference_order() == ("b", "a")
    assert not Role.CANARY.choosable and Role.SHADOW.choosable
