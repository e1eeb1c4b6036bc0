"""schemathesis against the gateway's own OpenAPI document, on a real server.

The gateway (:class:`~modelstream.gateway.serving.Serving`: gateway, rendezvous, scorers)
runs on SQLite with real ONNX models: service ``fraud`` (``lr@1`` champion, ``tree@1``
challenger, a fallback) answers inferences, and service ``scratch`` is there for the
management calls to change. Every operation of ``/openapi.json`` gets requests that
schemathesis generates from the document, valid and invalid (positive and negative
modes), with path parameters steered part of the time to real names (``fraud``,
``lr@1``, ...) so that the handlers behind the 404s are reached; management calls go
with the token, without it, and with a wrong one.

Checks, over at least 10,000 requests in total: no response is a 5xx, every error
(4xx) body is the protocol's ``{"error": "..."}``, and the server still answers
``/v2/health/live`` at the end.
"""

from __future__ import annotations

import base64
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelstream.backplane.factory import open_backplane
from modelstream.gateway.serving import Serving
from modelstream.models.deployment import Fallback
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.settings import Settings
from modelstream.testing.sklearn import onnx_classifier

with warnings.catch_warnings():
    # schemathesis' own import-time deprecation notices are not this suite's concern.
    warnings.simplefilter("ignore")
    import schemathesis
    from schemathesis import GenerationMode

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "fuzz-token"
PER_OPERATION = 400  # x 27 operations = 10,800: a margin above 10,000 requests
MINIMUM_REQUESTS = 10_000
SERVICES = ("fraud", "scratch", "nobody")
REFS = ("lr@1", "tree@1", "lr@2", "1", "2", "lr@99")
FALLBACK = Fallback(({"name": "label", "datatype": "INT64", "shape": [1], "data": [0]},))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, bytes]]:
    directory = tmp_path_factory.mktemp("fuzz")
    settings = Settings(backplane=f"sqlite://{directory}", api_token=TOKEN, default_partitions=2)
    backplane = open_backplane(settings.backplane, settings)
    registry = Registry(backplane, settings)
    lr, _ = onnx_classifier("logreg", seed=0)
    tree, _ = onnx_classifier("tree", seed=0)
    for service in ("fraud", "scratch"):
        registry.publish(service, "lr", lr, format="onnx")
        registry.publish(service, "tree", tree, format="onnx")
        registry.deploy(
            service,
            ModelRef("lr", 1),
            challengers=[ModelRef("tree", 1)],
            deadline_ms=2000,
            fallback=FALLBACK,
        )
    serving = Serving(backplane, settings, ["fraud", "scratch"], host="127.0.0.1", port=0)
    serving.start(load_timeout=30)
    try:
        assert serving.server is not None
        yield serving.server.url, lr
    finally:
        serving.stop()
        backplane.close()


def steer(case: schemathesis.Case, choices: dict[str, Any]) -> schemathesis.Case:
    """Replace generated path parameters (and the body) by drawn ones (``None``: keep)."""
    body = choices.pop("body", None)
    if body is not None:
        case.body = body
    for name, value in choices.items():
        if value is not None and case.path_parameters and name in case.path_parameters:
            case.path_parameters[name] = value
    return case


def body_is_protocol_error(response: requests.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), str) and bool(body["error"])


def test_the_gateway_survives_schemathesis(
    server: tuple[str, bytes], reliability: Any, request: pytest.FixtureRequest
) -> None:
    url, model = server
    with httpx.Client(base_url=url, timeout=10) as client:
        document = client.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    statuses: Counter[int] = Counter()
    per_operation: Counter[str] = Counter()
    failures: list[str] = []
    good = {"Authorization": f"Bearer {TOKEN}"}
    auth = st.sampled_from([good, good, good, {}, {"Authorization": "Bearer wrong"}])
    # A valid model now and then, so publishing gets past the refusal of random bytes.
    valid_publish = st.builds(
        lambda name: {"name": name, "format": "onnx", "data": base64.b64encode(model).decode()},
        st.sampled_from(["lr", "fuzzed"]),
    )

    with requests.Session() as session:
        for operation in operations:
            strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
                GenerationMode.NEGATIVE
            )
            publishes = operation.path.endswith("/models") and operation.method.upper() == "POST"
            choices = st.fixed_dictionaries(
                {
                    "service": st.none() | st.sampled_from(SERVICES),
                    "version": st.none() | st.sampled_from(REFS),
                    "ref": st.none() | st.sampled_from(REFS),
                    "body": (st.none() | valid_publish) if publishes else st.none(),
                }
            )

            @settings(
                max_examples=PER_OPERATION,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=st.builds(steer, strategy, choices), headers=auth)
            def fuzz(case: schemathesis.Case, headers: dict[str, str]) -> None:
                response = case.call(base_url=url, session=session, headers=headers, timeout=30)
                statuses[response.status_code] += 1
                per_operation[f"{case.operation.method.upper()} {case.operation.path}"] += 1
                where = f"{case.method} {case.formatted_path} -> {response.status_code}"
                if response.status_code >= 500:
                    failures.append(f"{where}: {response.text[:300]}")
                elif response.status_code >= 400 and not body_is_protocol_error(response):
                    failures.append(f"{where}: not an error body: {response.text[:300]}")

            fuzz()

    total = sum(statuses.values())
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    reliability.record(
        request.node.nodeid,
        {
            "backplane": "sqlite",
            "injected": "schemathesis requests (positive and negative) on every operation",
            "requests": total,
            "operations": len(per_operation),
            "responses_5xx": server_errors,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
        },
    )
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/v2/health/live").status_code == 200
    assert server_errors == 0, failures[:10]
    assert not failures, f"{len(failures)} bad responses, first: {failures[:10]}"
    assert set(per_operation) == {f"{o.method.upper()} {o.path}" for o in operations}
    assert total >= MINIMUM_REQUESTS
