"""How long a role waits after a backplane failure before it tries again.

A role that meets a :class:`~modelstream.errors.BackplaneError` (a broker away, a commit
refused after a rebalance) waits, then carries on from its committed offsets. The waits
double while the failures go on, so a broker that is down for minutes is not hammered,
and they are bounded by ``max_s``: a member that waits longer than its group's session
timeout is dropped from the group and fails again on return (see
:meth:`modelstream.settings.Settings.retry_max_s`). One success starts the waits over.
"""

from __future__ import annotations

FIRST_S = 0.2  # the first wait: long enough not to spin on a broker that refuses at once


class Backoff:
    """The waits after failures in a row: ``first_s``, twice that, ... up to ``max_s``.

    Not thread-safe: one belongs to one loop.
    """

    def __init__(self, max_s: float, first_s: float = FIRST_S) -> None:
        if first_s <= 0 or max_s <= 0:
            raise ValueError(f"a backoff needs first_s > 0 and max_s > 0, not {first_s}, {max_s}")
        self.first_s = min(first_s, max_s)
        self.max_s = max_s
        self._next = self.first_s

    @property
    def next_s(self) -> float:
        """The wait the next failure will be given."""
        return self._next

    def failed(self) -> float:
        """A failure: the wait to make now (the next one doubles, up to ``max_s``)."""
        wait = self._next
        self._next = min(wait * 2, self.max_s)
        return wait

    def succeeded(self) -> None:
        """A success: the next failure waits ``first_s`` again."""
        self._next = self.first_s
