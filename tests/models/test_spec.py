"""The YAML service spec and ``Registry.apply``."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelstream.errors import ConfigurationError
from modelstream.models.deployment import PolicyKind, Role
from modelstream.models.integrity import KeyPair
from modelstream.models.registry import Registry
from modelstream.models.spec import load_spec, parse_spec
from modelstream.testing.models import config

pytestmark = pytest.mark.integration

SPEC = """
service: svc
partitions: 2
deadline_ms: 40
policy: {kind: consensus, order: [gbm, rules], min_answers: 2, combine: vote}
allow_python: true
trusted_keys: [keys/modelstream.pub]
models:
  - {name: gbm, file: gbm.onnx, role: champion, wait_ms: 30}
  - name: rules
    file: rules.json
    entrypoint: modelstream.testing.models:ThresholdModel
    role: challenger
    weight: 0.5
"""


def write_spec(tmp_path: Path, onnx_bytes: bytes) -> Path:
    (tmp_path / "gbm.onnx").write_bytes(onnx_bytes)
    (tmp_path / "rules.json").write_bytes(config(threshold=0.5))
    path = tmp_path / "service.yaml"
    path.write_text(SPEC)
    return path


def test_apply_publishes_deploys_and_is_idempotent(
    registry: Registry, onnx_bytes: bytes, keys: KeyPair
) -> None:
    path = write_spec(keys.private_path.parent.parent, onnx_bytes)
    spec = load_spec(path)
    assert spec.trusted_keys == {keys.key_id: keys.public_key}
    deployed = registry.apply(spec)
    assert deployed.revision == 1 and deployed.policy.kind is PolicyKind.CONSENSUS
    assert {str(m.ref): m.role for m in deployed.models} == {
        "gbm@1": Role.CHAMPION,
        "rules@1": Role.CHALLENGER,
    }
    assert deployed.live("gbm").wait_ms == 30 and deployed.live("rules").weight == 0.5
    assert deployed.partitions == 2 and deployed.allow_python
    again = registry.apply(load_spec(path))
    assert again.revision == 1 and len(registry.descriptors("svc")) == 2


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("service: svc\nmodels: []", "models"),
        ("service: svc\nmodels: [{name: a}]", "either version or file"),
        ("service: svc\nmodels: [{name: a, version: 1, colour: red}]", "colour"),
        ("service: [", "not valid YAML"),
    ],
)
def test_invalid_specs_say_what_to_fix(text: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        parse_spec(text)


def test_spec_needs_one_champion(registry: Registry, onnx_bytes: bytes) -> None:
    registry.publish("svc", "a", onnx_bytes, format="onnx")
    spec = parse_spec("service: svc\nmodels: [{name: a, version: 1}]")
    with pytest.raises(ConfigurationError, match="exactly one champion"):
        registry.apply(spec)
