"""The registry over the models and deployment topics, on the memory and SQLite engines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from modelstream.backplane.memory import MemoryBackplane
from modelstream.backplane.port import Backplane
from modelstream.errors import (
    ConfigurationError,
    ModelLoadError,
    ModelNotAllowed,
    ModelNotFound,
    ServiceNotFound,
)
from modelstream.models.deployment import Policy, PolicyKind, Role
from modelstream.models.integrity import KeyPair
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.models.store import fetch_bytes
from modelstream.settings import Settings
from modelstream.testing.models import config
from tests.models.conftest import ENTRYPOINT

pytestmark = pytest.mark.integration

R = ModelRef.parse


def roles(registry: Registry) -> dict[str, Role]:
    return {str(m.ref): m.role for m in registry.deployment("svc").models}


def test_publish_assigns_versions_and_refuses_existing_ones(
    registry: Registry, onnx_bytes: bytes
) -> None:
    first = registry.publish("svc", "gbm", onnx_bytes, format="onnx")
    second = registry.publish("svc", "gbm", onnx_bytes, format="onnx")
    assert (first.version, second.version) == (1, 2)
    assert registry.publish("svc", "gbm", onnx_bytes, format="onnx", version=7).version == 7
    with pytest.raises(ConfigurationError, match="immutable"):
        registry.publish("svc", "gbm", onnx_bytes, format="onnx", version=2)
    assert [str(d.ref) for d in registry.descriptors("svc")] == ["gbm@1", "gbm@2", "gbm@7"]
    assert registry.descriptor("svc", R("gbm@2")) == second
    assert fetch_bytes(second) == onnx_bytes
    assert registry.services() == ["svc"]


def test_publish_refuses_bytes_that_do_not_load(registry: Registry) -> None:
    with pytest.raises(ModelLoadError):
        registry.publish("svc", "gbm", b"not a model", format="onnx")
    assert registry.descriptors("svc") == []


def test_river_must_be_signed_to_publish(
    registry: Registry, river_bytes: bytes, keys: KeyPair
) -> None:
    with pytest.raises(ConfigurationError, match="--sign-key"):
        registry.publish("svc", "online", river_bytes, format="river")
    d = registry.publish("svc", "online", river_bytes, format="river", sign_key=keys.private_path)
    assert d.key_id == keys.key_id and d.signature


def test_large_models_are_published_by_location(
    engine: tuple[Backplane, Settings], onnx_bytes: bytes, tmp_path: Path
) -> None:
    backplane, settings = engine
    small = settings.model_copy(update={"model_inline_max_bytes": 16})
    d = Registry(backplane, small).publish("svc", "gbm", onnx_bytes, format="onnx")
    assert d.data is None and d.location and d.location.startswith("file://")
    assert fetch_bytes(Registry(backplane, settings).descriptor("svc", d.ref)) == onnx_bytes


def test_a_model_too_large_for_one_record_goes_to_the_store_or_says_where_to_put_it(
    tmp_path: Path,
) -> None:
    from modelstream.testing.sklearn import onnx_classifier

    # 20 trees: about 11 kB, under model_inline_max_bytes (1 MiB), not under the room a
    # record of 20 kB leaves once the descriptor and base64 are counted.
    model, _ = onnx_classifier("gbm", rows=200, trees=20)
    settings = Settings(backplane="memory://", max_record_bytes=20_000)
    with pytest.raises(ConfigurationError, match="MODELSTREAM_MODEL_STORE_DIR"):
        Registry(MemoryBackplane(settings), settings).publish("svc", "big", model, format="onnx")
    stored = settings.model_copy(update={"model_store_dir": str(tmp_path)})
    registry = Registry(MemoryBackplane(stored), stored)
    d = registry.publish("svc", "big", model, format="onnx")
    assert d.data is None and d.location and d.location.startswith("file://")
    assert fetch_bytes(registry.descriptor("svc", d.ref)) == model


def test_deploy_promote_rollback_and_history(
    registry: Registry, published: Callable[[str], str]
) -> None:
    a, b, c = published("a"), published("b"), published("c")
    with pytest.raises(ServiceNotFound):
        registry.deployment("svc")
    with pytest.raises(ModelNotFound, match="not published"):
        registry.deploy("svc", R("nope@1"))
    first = registry.deploy("svc", R(a), [R(b)], canary=R(c), deadline_ms=50, reason="launch")
    assert first.revision == 1 and first.deadline_ms == 50
    assert roles(registry) == {a: Role.CHAMPION, b: Role.CHALLENGER, c: Role.CANARY}

    promoted = registry.promote("svc", R(b), reason="b wins")
    assert promoted.revision == 2 and promoted.reason == "b wins"
    assert roles(registry) == {b: Role.CHAMPION, a: Role.CHALLENGER, c: Role.CANARY}
    assert promoted.deadline_ms == 50  # kept

    rolled = registry.rollback("svc", reason="b misbehaves")
    assert rolled.revision == 3 and "rollback to a@1" in rolled.reason
    assert roles(registry) == {a: Role.CHAMPION, b: Role.CHALLENGER, c: Role.CANARY}

    policy = Policy(PolicyKind.FIRST)
    assert registry.set_policy("svc", policy, "speed").policy == policy
    assert [d.revision for d in registry.history("svc")] == [1, 2, 3, 4]
    assert registry.deployment("svc").policy == policy


def test_promote_a_new_version_of_the_champion_keeps_the_old_one_as_challenger(
    registry: Registry, published: Callable[[str], str]
) -> None:
    old = published("gbm")
    registry.deploy("svc", R(old))
    new = published("gbm")
    promoted = registry.promote("svc", R(new))
    assert roles(registry) == {new: Role.CHAMPION, old: Role.CHALLENGER}
    assert promoted.reason == f"promote {new} over {old}"
    assert promoted.lanes() == {
        "gbm": promoted.live_ref(new),
        old: promoted.live_ref(old),
    }


def test_two_versions_of_a_name_may_be_live_but_one_version_only_once(
    registry: Registry, published: Callable[[str], str]
) -> None:
    one, two = published("gbm"), published("gbm")
    both = registry.deploy("svc", R(one), [R(two)])
    assert roles(registry) == {one: Role.CHAMPION, two: Role.CHALLENGER}
    assert both.preference_order() == (one, two)
    with pytest.raises(ConfigurationError, match=f"{one} more than once"):
        registry.deploy("svc", R(one), [R(one)])


def test_a_policy_the_live_models_cannot_satisfy_is_refused(
    registry: Registry, published: Callable[[str], str]
) -> None:
    a, b, canary = published("a"), published("b"), published("c")
    registry.deploy("svc", R(a), [R(b)], canary=R(canary))
    with pytest.raises(ConfigurationError, match=r"names bb, not live .*remove it from the order"):
        registry.set_policy("svc", Policy(PolicyKind.PREFERENCE, order=("b", "bb")))
    with pytest.raises(ConfigurationError, match="a@9"):
        registry.set_policy("svc", Policy(PolicyKind.PREFERENCE, order=("a@9",)))
    # Two choosable models (the canary never is): a consensus of three cannot happen.
    with pytest.raises(ConfigurationError, match="lower min_answers to at most 2"):
        registry.set_policy("svc", Policy(PolicyKind.CONSENSUS, min_answers=3))
    assert registry.deployment("svc").policy == Policy()  # nothing refused was written
    registry.set_policy("svc", Policy(PolicyKind.CONSENSUS, order=("b", a), min_answers=2))
    # Dropping a model the order names must say so, not leave the order dangling.
    with pytest.raises(ConfigurationError, match="names b, not live"):
        registry.deploy("svc", R(a))


def test_rollback_needs_an_earlier_champion(
    registry: Registry, published: Callable[[str], str]
) -> None:
    registry.deploy("svc", R(published("a")))
    with pytest.raises(ConfigurationError, match="nothing to roll back"):
        registry.rollback("svc")


def test_deploy_checks_the_trust_policy(
    registry: Registry, python_bytes: bytes, published: Callable[[str], str]
) -> None:
    rules = registry.publish("svc", "rules", python_bytes, format="python", entrypoint=ENTRYPOINT)
    with pytest.raises(ModelNotAllowed):
        registry.deploy("svc", rules.ref)
    registry.deploy("svc", rules.ref, allow_python=True)
    # Later deploys keep allow_python unless told otherwise.
    assert registry.deploy("svc", R(published("a")), [rules.ref]).allow_python


def test_a_second_registry_sees_the_same_state(
    engine: tuple[Backplane, Settings], onnx_bytes: bytes
) -> None:
    backplane, settings = engine
    Registry(backplane, settings).publish("svc", "gbm", onnx_bytes, format="onnx")
    Registry(backplane, settings).deploy("svc", R("gbm@1"))
    other = Registry(backplane, settings)
    assert other.deployment("svc").champion is not None
    assert [str(d.ref) for d in other.descriptors("svc")] == ["gbm@1"]


def test_python_doubles_publish_with_their_declared_schema(registry: Registry) -> None:
    d = registry.publish(
        "svc",
        "slow",
        config(delay_ms=5),
        format="python",
        entrypoint="modelstream.testing.models:SlowModel",
    )
    assert [t.name for t in d.schema.outputs] == ["label", "probabilities"]
