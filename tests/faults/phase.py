"""One stretch of steady load on a :class:`~.stack.Stack`, and what it adds up to.

:class:`Steady` runs a stream load and an HTTP load on each gateway on threads of their
own, bounded in count and time; :func:`settle` waits (bounded) until every acknowledged
request is answered and ``results`` has gone quiet; :func:`counts` says, over the ids
of this stretch only, how many were sent, acknowledged, answered, answered twice, lost,
and what answered them: ``acknowledged_kinds`` counts the acknowledged ids by the kind of
their answer (``model``, or ``fallback``/``error``: the deadline's or a failure's answer,
which means the request was *not* served), ``replied_twice`` the stream requests with
two replies on their ``reply_to`` topic.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from modelstream.backplane.records import now_ms

from .stack import DEADLINE_MS, Stack, wait_until
from .traffic import HttpLoad, Sent

STREAM_RATE = 240.0  # records per second onto the backplane, half per service
HTTP_RATE = 40.0  # per gateway


class Steady:
    """Stream load plus HTTP load on every gateway, until :meth:`stop` or ``max_s``."""

    def __init__(
        self, stack: Stack, tag: str, max_s: float = 30.0, deadline_ms: int = DEADLINE_MS
    ) -> None:
        self.stream = stack.stream_load(f"{tag}", deadline_ms)
        self.http: dict[str, HttpLoad] = {
            name: stack.http_load(name, f"{tag}-{name}", deadline_ms) for name in stack.ports
        }
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(
                target=self.stream.run,
                args=(int(STREAM_RATE * max_s), STREAM_RATE, max_s, self._stop),
                name="stream-load",
            ),
            *(
                threading.Thread(
                    target=h.run,
                    args=(int(HTTP_RATE * max_s), HTTP_RATE, max_s, self._stop),
                    name=f"http-load-{name}",
                )
                for name, h in self.http.items()
            ),
        ]

    def __enter__(self) -> Steady:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop sending and wait for the HTTP calls in flight (bounded by their timeout)."""
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def pause(self, seconds: float) -> None:
        """Let the load run on for ``seconds`` (the stretch's length, not an assertion)."""
        self._stop.wait(seconds)

    @property
    def sents(self) -> list[Sent]:
        return [self.stream.sent, *(h.sent for h in self.http.values())]

    def acked(self, before_ms: int | None = None) -> set[str]:
        return set().union(*(s.acked(before_ms) for s in self.sents))

    def wait_acked(self, n: int, timeout_s: float) -> None:
        wait_until(
            f"{n} requests acknowledged", lambda: len(self.stream.sent.acked()) >= n, timeout_s
        )


def settle(stack: Stack, ids: set[str], timeout_s: float = 90.0, quiet_s: float = 1.0) -> None:
    """Wait until every id in ``ids`` is answered, then until no result arrives for
    ``quiet_s`` (so a second answer, if any were coming, would have been counted)."""
    results = stack.tally.results
    try:
        wait_until(
            f"{len(ids)} acknowledged requests answered",
            lambda: not stack.tally.unanswered(ids),
            timeout_s,
            every=0.2,
        )
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; {unanswered_where(stack, ids)}") from None
    give_up = time.monotonic() + 20

    def quiet() -> bool:
        last = stack.tally.read(
            lambda t: max((t.seen[r][-1] for r in results if t.seen[r]), default=0)
        )
        return now_ms() - last >= quiet_s * 1000 or time.monotonic() > give_up

    wait_until("results quiet", quiet, 30, every=0.2)


def unanswered_where(stack: Stack, ids: set[str]) -> str:
    """Where the unanswered of ``ids`` stopped: on ``requests`` (the rendezvous or the
    scorers held them) or before it (the featurizer never forwarded them)."""
    missing = stack.tally.unanswered(ids)
    requested = stack.tally.read(lambda t: missing & t.requested)
    before = sorted(missing - requested)
    return (
        f"{len(missing)} unanswered, of which {len(requested)} reached a requests topic "
        f"(e.g. {sorted(requested)[:5]}) and {len(before)} did not (e.g. {before[:5]}); "
        f"{role_warnings(stack)}"
    )


def role_warnings(stack: Stack, per_role: int = 3) -> str:
    """The last warnings and errors in each role's log: what a failure report needs."""
    lines = [
        f"  {path.name}: {line}"
        for path in sorted((stack.workdir / "logs").glob("*.log"))
        for line in [
            x
            for x in path.read_text(errors="replace").splitlines()
            if " WARNING " in x or " ERROR " in x
        ][-per_role:]
    ]
    return "the roles' last warnings:\n" + "\n".join(lines)


def not_by_model(stack: Stack, ids: set[str]) -> list[str]:
    """Those of ``ids`` whose answer is not a model's (a fallback, an error, or none)."""
    return sorted(stack.tally.read(lambda t: {r for r in ids if t.kind_of.get(r) != "model"}))


def counts(stack: Stack, load: Steady) -> dict[str, Any]:
    """Sent, acknowledged, answered (by kind), answered and replied twice, lost, over
    this stretch's ids (see the module docstring)."""
    sent = set().union(*(s.sent_at for s in load.sents))
    acked = load.acked()
    failures: Counter[str] = Counter()
    for s in load.sents:
        failures.update(s.failures)
    answers = stack.tally.read(lambda t: {r: t.answers[r] for r in sent})
    kinds = stack.tally.read(lambda t: Counter(t.kind_of[r] for r in sent if r in t.kind_of))
    acked_kinds = stack.tally.read(lambda t: Counter(t.kind_of.get(r, "none") for r in acked))
    replied_twice = stack.tally.read(lambda t: sorted(r for r in sent if t.replies[r] > 1))
    lost = sorted(r for r in acked if not answers[r])
    twice = sorted(r for r in sent if answers[r] > 1)
    return {
        "sent": len(sent),
        "acknowledged": len(acked),
        "acknowledged_stream": len(load.stream.sent.acked()),
        "acknowledged_http": len(acked) - len(load.stream.sent.acked()),
        "not_acknowledged": dict(failures),
        "answered": sum(1 for r in sent if answers[r]),
        "answered_twice": len(twice),
        "lost": len(lost),
        "replied_twice": len(replied_twice),
        "answer_kinds": dict(kinds),
        "acknowledged_kinds": dict(acked_kinds),
        "examples": {
            "lost": lost[:10],
            "answered_twice": twice[:10],
            "replied_twice": replied_twice[:10],
            "acknowledged_not_by_model": not_by_model(stack, acked)[:10],
        },
    }
