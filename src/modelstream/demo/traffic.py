"""Open-loop HTTP traffic for the demo: requests at a fixed rate, answers recorded.

Requests are sent at ``rate`` per second whatever the answers' latency (open loop), up
to ``max_in_flight`` at once; the run is bounded by ``duration`` and, for the answers
still in flight at the end, by the deadline plus a grace period. Each request names its
truck (``parameters.entity``): the featurizer fills in the truck's features, so the body
carries only a placeholder input. ``ask`` chooses the truck and the request id (and lets
the caller remember the request, so its label can come later).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import numpy as np


@dataclass(frozen=True, slots=True)
class Answer:
    """One answered request: when it was sent (s since the start), by whom, what."""

    sent_s: float
    model: str
    label: int | None
    fallback: bool
    latency_ms: float


@dataclass
class Outcome:
    """What the traffic saw, answer by answer."""

    sent: int = 0
    answered: int = 0
    deadline_met: int = 0
    fallback: int = 0
    missed: int = 0  # 504: no answer by the deadline, not even the fallback
    failed: dict[int, int] = field(default_factory=dict)  # other statuses, by code
    transport_errors: int = 0
    by_model: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    answers: dict[str, Answer] = field(default_factory=dict)  # by request id
    recent: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=4000))

    @property
    def lost(self) -> int:
        """Requests that got no HTTP response at all."""
        return self.sent - self.answered - self.missed - sum(self.failed.values())

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else 0.0

    def window(self, now: float, seconds: float = 2.0) -> tuple[float, float, float]:
        """``(answers/s, p50 ms, p99 ms)`` over the last ``seconds`` (monotonic ``now``)."""
        latencies = [lat for at, lat in list(self.recent) if at >= now - seconds]
        if not latencies:
            return 0.0, 0.0, 0.0
        p50, p99 = np.percentile(latencies, [50, 99])
        return len(latencies) / seconds, float(p50), float(p99)


def _body(request_id: str, entity: str, deadline_ms: int) -> dict[str, object]:
    return {
        "id": request_id,
        "inputs": [{"name": "reading", "datatype": "FP32", "shape": [1, 1], "data": [0.0]}],
        "parameters": {"deadline_ms": deadline_ms, "entity": entity},
    }


def _label(payload: dict[str, object]) -> int | None:
    for output in payload.get("outputs", []) or []:  # type: ignore[attr-defined]
        if isinstance(output, dict) and output.get("name") == "label" and output.get("data"):
            return int(output["data"][0])
    return None


async def _one(
    client: httpx.AsyncClient,
    url: str,
    request_id: str,
    body: dict[str, object],
    *,
    sent_s: float,
    outcome: Outcome,
) -> None:
    started = time.perf_counter()
    try:
        response = await client.post(url, json=body)
    except httpx.HTTPError:
        outcome.transport_errors += 1
        return
    finished = time.perf_counter()
    elapsed = (finished - started) * 1000
    if response.status_code == 200:
        payload = response.json()
        params = payload.get("parameters", {})
        outcome.answered += 1
        outcome.latencies_ms.append(elapsed)
        outcome.recent.append((finished, elapsed))
        fallback = bool(params.get("fallback", False))
        model = "fallback" if fallback else str(payload.get("model_version", "?"))
        outcome.by_model[model] = outcome.by_model.get(model, 0) + 1
        outcome.deadline_met += bool(params.get("deadline_met", True))
        outcome.fallback += fallback
        outcome.answers[request_id] = Answer(sent_s, model, _label(payload), fallback, elapsed)
    elif response.status_code == 504:
        outcome.missed += 1
    else:
        outcome.failed[response.status_code] = outcome.failed.get(response.status_code, 0) + 1


async def run_traffic(
    base_url: str,
    service: str,
    ask: Callable[[], tuple[str, str]],
    *,
    rate: float,
    duration: float,
    deadline_ms: int,
    max_in_flight: int = 256,
    on_tick: Callable[[float, Outcome], None] | None = None,
    tick_every: float = 0.25,
) -> Outcome:
    """Send ``rate`` requests a second for ``duration`` seconds; wait for the last answers.

    ``ask()`` returns ``(request id, entity)`` for the next request. ``on_tick(elapsed
    seconds, outcome)`` is called about every ``tick_every`` seconds, and once at the end.
    """
    outcome = Outcome()
    url = f"{base_url}/v2/models/{service}/infer"
    # As many connections as requests in flight: a request queued inside httpx's pool
    # costs a scan of every connection at each step, which grows without bound under load.
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    timeout = httpx.Timeout(deadline_ms / 1000 + 5.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        last_tick = -tick_every
        while (elapsed := time.perf_counter() - start) < duration:
            due = int(elapsed * rate) + 1
            while outcome.sent < due and len(tasks) < max_in_flight:
                request_id, entity = ask()
                outcome.sent += 1
                body = _body(request_id, entity, deadline_ms)
                task = asyncio.create_task(
                    _one(client, url, request_id, body, sent_s=elapsed, outcome=outcome)
                )
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if on_tick is not None and elapsed - last_tick >= tick_every:
                last_tick = elapsed
                on_tick(elapsed, outcome)
            await asyncio.sleep(min(0.005, 1 / rate))
        if tasks:
            await asyncio.wait(tasks, timeout=deadline_ms / 1000 + 10.0)
        for task in tasks:
            task.cancel()
    if on_tick is not None:
        on_tick(duration, outcome)
    return outcome
