"""schemathesis against the gateway's own OpenAPI document, on a real server.

The gateway (:class:`~modelstream.gateway.serving.Serving`: gateway, rendezvous, scorers)
runs on SQLite with real ONNX models: service ``fraud`` (``lr@1`` champion, ``tree@1``
challenger, a fallback) answers inferences, and service ``scratch`` is there for the
management calls to change. Every operation of ``/openapi.json`` gets requests that
schemathesis generates from the document, valid and invalid (positive and negative
modes), with path parameters steered part of the time to real names (``fraud``,
``lr@1``, ...) so that the handlers behind the 404s are reached; management calls go
with the token, without it, and with a wrong one.

The requests are generated in one worker process per core (see ``fuzzing.py``),
each with its share of the operations, against the one server in this process. The
costly infer operations get fewer cases than the others (see ``PER_INFER``).

Checks, over at least 10,000 requests in total: no response is a 5xx, every error
(4xx) body is the protocol's ``{"error": "..."}``, and the server still answers
``/v2/health/live`` at the end.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from typing import Any

import httpx
import pytest

from modelstream.backplane.factory import open_backplane
from modelstream.gateway.serving import Serving
from modelstream.models.deployment import Fallback
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.settings import Settings
from modelstream.testing.sklearn import onnx_classifier

from .fuzzing import Findings, fuzz_operations, operation_names

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "fuzz-token"
MINIMUM_REQUESTS = 10_000
# The infer bodies (recursive tensors, free-form parameters) grow as hypothesis mutates
# them: generating 380 costs 44 s of CPU, 150 cost 10 s. So the two infer operations get
# 150 cases each and every other operation 400: 25 x 400 + 2 x 150 = 10,300 requests.
PER_OPERATION = 400
PER_INFER = 150
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


def test_the_gateway_survives_schemathesis(
    server: tuple[str, bytes], reliability: Any, request: pytest.FixtureRequest
) -> None:
    url, model = server
    with httpx.Client(base_url=url, timeout=10) as client:
        names = operation_names(client.get("/openapi.json").json())
    workers = max(1, min(len(names), os.cpu_count() or 1))
    budget = {name: PER_INFER if name.endswith("/infer") else PER_OPERATION for name in names}
    # Dealt out costliest first, so that the infer operations go to different workers.
    dealt = sorted(names, key=lambda name: not name.endswith("/infer"))
    shares = [{name: budget[name] for name in dealt[i::workers]} for i in range(workers)]
    found = Findings()
    # spawn, not fork: this process runs the server's threads. The generators run at a
    # low priority (os.nice): they are the CPU-bound part, deadline-free, and a test on
    # the other xdist worker may be timing its deadlines meanwhile.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=os.nice, initargs=(10,)
    ) as pool:
        for share in pool.map(fuzz_operations, repeat(url), repeat(TOKEN), repeat(model), shares):
            found.add(share)

    total = sum(found.statuses.values())
    server_errors = sum(n for status, n in found.statuses.items() if status >= 500)
    reliability.record(
        request.node.nodeid,
        {
            "backplane": "sqlite",
            "injected": "schemathesis requests (positive and negative) on every operation",
            "requests": total,
            "operations": len(found.per_operation),
            "responses_5xx": server_errors,
            "statuses": {str(k): v for k, v in sorted(found.statuses.items())},
        },
    )
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/v2/health/live").status_code == 200
    assert server_errors == 0, found.failures[:10]
    assert not found.failures, f"{len(found.failures)} bad responses: {found.failures[:10]}"
    assert set(found.per_operation) == set(names)
    assert total >= MINIMUM_REQUESTS
