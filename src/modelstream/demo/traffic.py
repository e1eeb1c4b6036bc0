"""Open-loop HTTP traffic for the demo: requests at a fixed rate, answers recorded.

Requests are sent at ``rate`` per second whatever the answers' latency (open loop), up
to ``max_in_flight`` at once; the run is bounded by ``duration`` and, for the answers
still in flight at the end, by the deadline plus a grace period.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import numpy as np
import numpy.typing as npt


@dataclass
class Outcome:
    """What the traffic saw, answer by answer."""

    sent: int = 0
    answered: int = 0
    deadline_met: int = 0
    fallback: int = 0
    missed: int = 0  # 504: no answer by the deadline
    failed: dict[int, int] = field(default_factory=dict)  # other statuses, by code
    transport_errors: int = 0
    by_model: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Requests that got no HTTP response at all."""
        return self.sent - self.answered - self.missed - sum(self.failed.values())

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else 0.0


def _body(row: npt.NDArray[np.float32], deadline_ms: int) -> dict[str, object]:
    return {
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": [1, len(row)], "data": row.tolist()}
        ],
        "parameters": {"deadline_ms": deadline_ms},
    }


async def _one(
    client: httpx.AsyncClient, url: str, body: dict[str, object], outcome: Outcome
) -> None:
    started = time.perf_counter()
    try:
        response = await client.post(url, json=body)
    except httpx.HTTPError:
        outcome.transport_errors += 1
        return
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code == 200:
        payload = response.json()
        params = payload.get("parameters", {})
        outcome.answered += 1
        outcome.latencies_ms.append(elapsed)
        model = str(payload.get("model_version", "?"))
        outcome.by_model[model] = outcome.by_model.get(model, 0) + 1
        outcome.deadline_met += bool(params.get("deadline_met", True))
        outcome.fallback += bool(params.get("fallback", False))
    elif response.status_code == 504:
        outcome.missed += 1
    else:
        outcome.failed[response.status_code] = outcome.failed.get(response.status_code, 0) + 1


async def run_traffic(
    base_url: str,
    service: str,
    rows: npt.NDArray[np.float32],
    *,
    rate: float,
    duration: float,
    deadline_ms: int,
    max_in_flight: int = 256,
    on_tick: Callable[[float, Outcome], None] | None = None,
) -> Outcome:
    """Send ``rate`` requests a second for ``duration`` seconds; wait for the last answers."""
    outcome = Outcome()
    url = f"{base_url}/v2/models/{service}/infer"
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    timeout = httpx.Timeout(deadline_ms / 1000 + 5.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        index = 0
        while (elapsed := time.perf_counter() - start) < duration:
            due = int(elapsed * rate) + 1
            while outcome.sent < due and len(tasks) < max_in_flight:
                body = _body(rows[index % len(rows)], deadline_ms)
                index += 1
                outcome.sent += 1
                task = asyncio.create_task(_one(client, url, body, outcome))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if on_tick is not None:
                on_tick(elapsed / duration, outcome)
            await asyncio.sleep(min(0.005, 1 / rate))
        if tasks:
            await asyncio.wait(tasks, timeout=deadline_ms / 1000 + 10.0)
        for task in tasks:
            task.cancel()
    if on_tick is not None:
        on_tick(1.0, outcome)
    return outcome
