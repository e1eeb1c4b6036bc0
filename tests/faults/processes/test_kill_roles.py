"""kill -9 each role in turn under steady load, restart it: nothing acknowledged is lost.

For each backplane (SQLite, Kafka) one stack runs every role as a process of its own
(:mod:`tests.faults.stack`), and each test here, for one role, does what a crash and a supervisor
would: under steady load (stream clients onto the backplane, HTTP clients on two
gateways), SIGKILL the role's process, leave it down for a second, start the same
command again, keep the load on until the restarted process has served, then stop the
load and wait (bounded) for the answers. It checks what an operator would:

* every acknowledged request (a produce that returned, or HTTP 200) has an answer on
  ``<service>.results`` (0 lost), and no request has two (0 answered twice), nor two
  replies on its ``reply_to`` topic;
* every request acknowledged before the kill is answered *by a model*: a deadline
  fallback or an error answer is not counted as served. (The requests of these tests
  have a deadline of 30 s, twice the stack's, to outlast a restart: on Kafka, beside a
  second test worker, the restarted rendezvous took over its partitions up to 17 s after
  the kill. So a role that drops what it held when killed shows up here, not as a lost
  request.) Requests acknowledged while the role was down are held to the same
  rule in the figures (``acknowledged_kinds``) but not asserted: on a slow machine a
  rebalance can outlast their deadline, and then the deadline's answer is the right one.
  HTTP calls in flight at a killed gateway are not acknowledged (the client saw the
  connection fail), so whatever answer they later get is not counted either way;
* no HTTP call is answered with an error: a call in flight while the rendezvous was
  down gets its answer when the restarted one takes over, even if the killed one had
  produced the answer on ``results`` but not yet the reply;
* the restarted role served again (its first output after the restart);
* for the archiver, every request, score and result acknowledged before the kill is in
  the Parquet archive after the restart (read back with ``ArchiveReader``).

HTTP requests in flight at the killed gateway fail (they were never acknowledged); the
stream clients and the other gateway carry on. The figures, with recovery times, go to
the ``reliability`` report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelstream.archive.reader import ArchiveReader
from modelstream.backplane.records import now_ms
from modelstream.wire.topics import ServiceTopics
from tests.faults.conftest import Reliability
from tests.faults.phase import Steady, counts, not_by_model, role_warnings, settle
from tests.faults.stack import ROLES, Stack, wait_until
from tests.faults.traffic import Tally

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOWN_S = 0.5  # how long the role stays dead before the "supervisor" restarts it
AFTER_S = 0.5  # load kept on after the restarted role served
RECOVERY_TIMEOUT_S = 90.0
RESTART_DEADLINE_MS = 30_000  # twice the stack's DEADLINE_MS: outlasts a restart (see above)
PROCESS = {r: r for r in ROLES} | {"gateway": "gateway-a"}


def scorer_pid(scorer_id: str) -> int | None:
    parts = scorer_id.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def first_output(stack: Stack, role: str, load: Steady, pid: int, since_ms: int) -> int | None:
    """Wall ms of the first thing the restarted ``role`` (process ``pid``) served."""
    tally: Tally = stack.tally
    if role == "scorer":
        return tally.read(
            lambda t: min(
                (at for s, at in t.scorer_first_seen.items() if scorer_pid(s) == pid), default=None
            )
        )
    if role == "rendezvous":
        return tally.first_seen_after(tally.results, since_ms)
    if role == "featurizer":
        return tally.first_seen_after({ServiceTopics(stack.feat).requests}, since_ms)
    if role == "gateway":
        acked = load.http["gateway-a"].sent.acked_at
        return min((t for t in list(acked.values()) if t >= since_ms), default=None)
    files = [p for p in stack.archive_root.rglob("*.parquet") if not p.name.startswith(".")]
    return min(
        (int(p.stat().st_mtime * 1000) for p in files if p.stat().st_mtime * 1000 >= since_ms),
        default=None,
    )


def archive_missing(root: Path, service: str, ids: set[str]) -> dict[str, int]:
    """Per kind, how many of ``ids`` the archive lacks (requests, lr scores, results)."""
    reader = ArchiveReader(root)
    try:
        requests = set(reader.requests(service, wide=False)["request_id"])
        scores = reader.scores(service)
        scored = set(scores[scores["model"] == "lr"]["request_id"])
        results = set(reader.results(service)["request_id"])
    except Exception:  # no file of some kind yet: everything of it is missing
        return {"requests": len(ids), "scores": len(ids), "results": len(ids)}
    return {
        "requests": len(ids - requests),
        "scores": len(ids - scored),
        "results": len(ids - results),
    }


@pytest.mark.parametrize("role", ROLES)
def test_a_killed_role_loses_no_acknowledged_request(
    stack: Stack, role: str, reliability: Reliability, request: pytest.FixtureRequest
) -> None:
    stack.check_alive()
    name = PROCESS[role]
    with Steady(stack, tag=f"k-{role}", deadline_ms=RESTART_DEADLINE_MS) as load:
        started_at = now_ms()
        load.wait_acked(120, timeout_s=30)  # about half a second of load before the kill
        killed_at = stack.fleet.kill(name).killed_at_ms
        load.pause(DOWN_S)
        child = stack.fleet.restart(name)
        restarted_at = child.started_ms

        def served() -> bool:
            stack.check_alive()
            return first_output(stack, role, load, child.pid, restarted_at) is not None

        wait_until(f"the restarted {role} to serve", served, RECOVERY_TIMEOUT_S, every=0.1)
        load.pause(AFTER_S)
    stopped_at = now_ms()
    served_at = first_output(stack, role, load, child.pid, restarted_at)
    assert served_at is not None
    acked = load.acked()
    settle(stack, acked)
    settled_at = now_ms()
    figures: dict[str, Any] = counts(stack, load)
    unserved = not_by_model(stack, load.acked(before_ms=killed_at))

    before_restart = load.acked(before_ms=restarted_at)
    answered_at = stack.tally.read(lambda t: [t.answered_at[r] for r in before_restart])
    figures |= {
        "backplane": stack.url.split(":", 1)[0],
        "role": role,
        "injected": f"SIGKILL of `{' '.join(child.argv[3:])}`, restarted {DOWN_S} s later",
        "acknowledged_before_kill": len(load.acked(before_ms=killed_at)),
        "before_kill_not_by_model": len(unserved),
        "recovery_s": round((served_at - killed_at) / 1000, 2),
        "caught_up_s": round((max(answered_at, default=killed_at) - killed_at) / 1000, 2),
        "timeline_s": {  # from the start of the load
            "killed": round((killed_at - started_at) / 1000, 2),
            "restarted": round((restarted_at - started_at) / 1000, 2),
            "served": round((served_at - started_at) / 1000, 2),
            "load_stopped": round((stopped_at - started_at) / 1000, 2),
            "settled": round((settled_at - started_at) / 1000, 2),
        },
    }
    if role == "archiver":
        plain_ids = {r for r in load.acked(before_ms=killed_at) if is_plain(r)}
        wait_until(
            "every row acknowledged before the kill archived",
            lambda: not any(archive_missing(stack.archive_root, stack.plain, plain_ids).values()),
            60,
            every=0.5,
        )
        figures["archived_before_kill"] = len(plain_ids)
        figures["archive_rows_lost"] = archive_missing(stack.archive_root, stack.plain, plain_ids)
    reliability.record(request.node.nodeid.split("::")[-1], figures)

    assert figures["acknowledged_stream"] > 0 and figures["acknowledged_http"] > 0
    assert figures["lost"] == 0, f"acknowledged requests without an answer: {figures}"
    assert figures["answered_twice"] == 0, f"requests answered twice: {figures}"
    assert figures["replied_twice"] == 0, f"requests replied to twice: {figures}"
    # Calls to the killed gateway fail to connect; none may be answered with an error
    # (a 504 at the deadline for a request a model answered is a reply lost in the crash).
    errors = {k: n for k, n in figures["not_acknowledged"].items() if k.startswith("HTTP")}
    assert not errors, f"HTTP calls answered with an error: {errors}; {role_warnings(stack)}"
    detail = stack.tally.read(lambda t: {r: t.not_by_model.get(r, "none") for r in unserved[:5]})
    assert not unserved, (
        f"{len(unserved)} acknowledged before the kill, not answered by a model: {detail}; "
        f"{role_warnings(stack)}"
    )
    stack.check_alive()


def is_plain(request_id: str) -> bool:
    """Both loads send even-numbered requests to the plain service (``...-s12``, ``-h4``)."""
    return int(request_id.rsplit("-", 1)[1][1:]) % 2 == 0
