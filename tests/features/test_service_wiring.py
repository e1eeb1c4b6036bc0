"""How a service gets a feature set: deployment record, service spec, CLI, gateway, roles."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.memory import MemoryBackplane
from modelstream.cli.app import app
from modelstream.errors import ConfigurationError, DeadlineExceeded, InvalidRequest
from modelstream.features.records import KIND_HEADER, REQUEST_KIND
from modelstream.features.role import featurizer_roles, store_path
from modelstream.gateway.dataplane import DataPlane
from modelstream.models.codec import decode_deployment, encode_deployment
from modelstream.models.deployment import Deployment, LiveModel, Role
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.models.spec import parse_spec
from modelstream.settings import Settings
from modelstream.wire.requests import decode_request
from tests.features.helpers import echo_model, read_all

SET = "tests.features.sample_set:TRUCKS"
SET_YAML = """
name: trucks
version: 2
features:
  - {name: events, agg: count, window: {tumbling: 1000}}
"""
SPEC = """
service: trucks
models: [{name: echo, version: 1, role: champion}]
"""


def live() -> tuple[LiveModel, ...]:
    return (LiveModel(ModelRef("echo", 1), Role.CHAMPION),)


def test_the_deployment_record_carries_the_feature_set() -> None:
    with_set = Deployment("trucks", live(), feature_set=SET)
    assert decode_deployment(encode_deployment(with_set)).feature_set == SET
    assert decode_deployment(encode_deployment(Deployment("trucks", live()))).feature_set is None


def test_the_spec_takes_an_import_path_or_a_file(tmp_path: Path) -> None:
    assert parse_spec(SPEC + f"features: {SET}\n", tmp_path).feature_set == SET
    (tmp_path / "sets").mkdir()
    (tmp_path / "sets" / "trucks.yaml").write_text(SET_YAML)
    spec = parse_spec(SPEC + "features: sets/trucks.yaml\n", tmp_path)
    assert spec.feature_set == str((tmp_path / "sets" / "trucks.yaml").resolve())
    assert parse_spec(SPEC, tmp_path).feature_set is None


@pytest.mark.parametrize(
    ("features", "says"),
    [
        ("{name: trucks, version: 1, features: []}", "move inline definitions into a file"),
        ("tests.features.sample_set:NOT_A_SET", "not a FeatureSet"),
        ("missing.yaml", "cannot read"),
    ],
)
def test_the_spec_refuses_what_the_featurizer_could_not_load(
    tmp_path: Path, features: str, says: str
) -> None:
    with pytest.raises(ConfigurationError, match=says):
        parse_spec(SPEC + f"features: {features}\n", tmp_path)


@pytest.mark.integration
def test_deploy_sets_keeps_and_removes_the_feature_set(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'bp'}"
    (tmp_path / "echo.onnx").write_bytes(echo_model(2))
    (tmp_path / "set.yaml").write_text(SET_YAML)
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(app, ["--backplane", url, *args])
        assert result.exit_code == 0, result.output
        return result.output

    cli("models", "publish", "--service", "trucks", "--name", "echo", str(tmp_path / "echo.onnx"))
    deploy = ["deploy", "--service", "trucks", "--champion", "echo@1"]
    assert "features tests.features.sample_set:TRUCKS" in cli(*deploy, "--feature-set", SET)
    assert "features tests.features.sample_set:TRUCKS" in cli(*deploy)  # kept
    out = cli(*deploy, "--feature-set", str(tmp_path / "set.yaml"))
    assert f"features {(tmp_path / 'set.yaml').resolve()}" in out
    assert "features" not in cli(*deploy, "--feature-set", "")
    bad = runner.invoke(app, ["--backplane", url, *deploy, "--feature-set", "nope.yaml"])
    assert bad.exit_code == 1 and "cannot read" in bad.output
    # `run featurizer` refuses a service that has no feature set, saying how to add one.
    refused = runner.invoke(app, ["--backplane", url, "run", "featurizer", "-s", "trucks"])
    assert refused.exit_code == 1 and "--feature-set" in refused.output


@pytest.mark.integration
def test_roles_are_built_only_for_services_with_a_feature_set(tmp_path: Path) -> None:
    settings = Settings(backplane=f"sqlite://{tmp_path}")
    backplane = open_backplane(settings.backplane, settings)
    try:
        roles = featurizer_roles(
            backplane,
            settings,
            [Deployment("plain", live()), Deployment("trucks", live(), feature_set=SET)],
        )
        assert [r.service for r in roles] == ["trucks"]
        roles[0].start().stop()
        roles[0].stop()  # idempotent
    finally:
        backplane.close()
    assert store_path(settings, "trucks") == tmp_path / "features" / "trucks.db"
    assert store_path(Settings(backplane="memory://"), "trucks") is None


def test_the_gateway_routes_a_featurized_request_onto_events() -> None:
    """Without a featurizer nothing answers: the request's record is what is checked."""
    settings = Settings(backplane="memory://", default_partitions=2)
    backplane = MemoryBackplane(settings)
    registry = Registry(backplane, settings)
    registry.publish("trucks", "echo", echo_model(2), format="onnx")
    registry.deploy("trucks", ModelRef("echo", 1), deadline_ms=50, feature_set=SET)
    body = {"id": "r-1", "inputs": [{"name": "t", "datatype": "FP32", "shape": [1], "data": [1]}]}

    async def scenario() -> None:
        plane = DataPlane(backplane, settings, registry, "gw-1", grace_ms=0)
        await plane.start()
        try:
            with pytest.raises(InvalidRequest, match=r"parameters\.entity"):
                await plane.infer("trucks", body)
            with pytest.raises(DeadlineExceeded, match="within its deadline"):
                await plane.infer("trucks", {**body, "parameters": {"entity": "truck-9"}})
        finally:
            await plane.stop()

    try:
        asyncio.run(scenario())
        (record,) = read_all(backplane, "trucks.events")
        assert record.key == b"truck-9"
        assert record.header(KIND_HEADER) == REQUEST_KIND
        request = decode_request(record.value)
        assert (request.id, request.entity) == ("r-1", "truck-9")
        assert request.reply_to == "trucks.replies.gw-1"
        if "trucks.requests" in {t.name for t in backplane.list_topics()}:
            assert read_all(backplane, "trucks.requests") == []
    finally:
        backplane.close()
