"""Fixtures of the gateway tests: the real stack over real HTTP.

``stack`` runs, in this process, on a SQLite backplane in a temporary directory: the
registry with two real ONNX classifiers (``lr@1`` champion, ``tree@1`` challenger, and
an unpublished-as-live ``lr@2``), the real rendezvous and scorers of service ``fraud``
(reporting to the gateway's metrics, as under ``modelstream serve``), and the gateway
under uvicorn on a free loopback port with a management token. Service ``idle`` is
deployed but nothing serves it (no rendezvous, no scorer), and service ``unscored`` has
a rendezvous but no scorer, for the deadline paths.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.gateway.dataplane import DataPlane
from modelstream.gateway.metrics import GatewayMetrics
from modelstream.gateway.server import GatewayServer, build_gateway
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.rendezvous.server import Rendezvous
from modelstream.scoring.pool import ScorerPool
from modelstream.settings import Settings
from modelstream.testing.sklearn import onnx_classifier

TOKEN = "s3cret-token"


@dataclass
class Stack:
    url: str
    client: httpx.Client
    admin: httpx.Client
    registry: Registry
    backplane: Backplane
    plane: DataPlane
    metrics: GatewayMetrics
    models: dict[str, bytes]
    x: npt.NDArray[np.float32]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory: Path = tmp_path_factory.mktemp("backplane")
    settings = Settings(backplane=f"sqlite://{directory}", api_token=TOKEN, default_partitions=2)
    backplane = open_backplane(settings.backplane, settings)
    registry = Registry(backplane, settings)
    lr, data = onnx_classifier("logreg", seed=0)
    tree, _ = onnx_classifier("tree", seed=0)
    lr2, _ = onnx_classifier("logreg", seed=1)
    for service in ("fraud", "idle", "unscored"):
        registry.publish(service, "lr", lr, format="onnx")
        registry.publish(service, "tree", tree, format="onnx")
    registry.publish("fraud", "lr", lr2, format="onnx")
    registry.deploy("fraud", ModelRef("lr", 1), challengers=[ModelRef("tree", 1)], deadline_ms=2000)
    registry.deploy("idle", ModelRef("lr", 1), deadline_ms=150)
    registry.deploy("unscored", ModelRef("lr", 1), deadline_ms=150)

    rendezvous = [Rendezvous(backplane, settings, s) for s in ("fraud", "unscored")]
    metrics = GatewayMetrics()
    pool = ScorerPool(backplane, settings, "fraud", observer=metrics)
    app, plane = build_gateway(
        backplane, settings, registry, gateway_id="gw-test", services=["fraud"], metrics=metrics
    )
    server = GatewayServer(app, "127.0.0.1", 0)
    started: list[object] = []
    try:
        for r in rendezvous:
            r.start()
            started.append(r)
        pool.start()
        started.append(pool)
        assert pool.wait_for({"lr", "tree"}, timeout=30)
        assert all(r.wait_until_assigned(10) for r in rendezvous)
        server.start()
        started.append(server)
        with (
            httpx.Client(base_url=server.url, timeout=10) as client,
            httpx.Client(
                base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}
            ) as admin,
        ):
            yield Stack(
                server.url,
                client,
                admin,
                registry,
                backplane,
                plane,
                metrics,
                {"lr@1": lr, "tree@1": tree, "lr@2": lr2},
                data.x,
            )
    finally:
        for part in reversed(started):
            part.stop()  # type: ignore[attr-defined]
        backplane.close()
