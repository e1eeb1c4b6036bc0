"""The versions timeline of a service: published, deployed, promoted, rolled back.

Built from the registry alone (so every gateway shows the same story): each descriptor's
``created_at`` is a *published* event, and each deployment record is compared with the
one before it. A record's kind is, in this order of precedence:

* ``rolled_back`` — its reason starts with ``rollback`` (what ``Registry.rollback`` writes);
* ``promoted`` — the champion changed to a version that was already live;
* ``deployed`` — the first record, or any change of the live versions or their roles;
* ``policy`` — only the rendezvous policy changed;
* ``changed`` — anything else (deadline, fallback, trust settings).

Every event carries ``at`` (ms), ``kind``, a one-line ``text`` of what changed, the
record's ``reason`` and, for deployment records, its ``revision``. Events are returned
newest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelstream.models.deployment import Deployment
from modelstream.models.descriptor import ModelDescriptor


def _live(d: Deployment) -> dict[str, str]:
    return {str(m.ref): m.role.value for m in d.models}


def _changes(before: Deployment | None, after: Deployment) -> tuple[str, str]:
    """The kind and a one-line description of ``after`` relative to ``before``."""
    now = _live(after)
    champion = str(after.champion.ref) if after.champion else None
    if before is None:
        parts = [f"{ref} as {role}" for ref, role in now.items()]
        return "deployed", "deployed " + ", ".join(parts)
    was = _live(before)
    old_champion = str(before.champion.ref) if before.champion else None
    if after.reason.lower().startswith("rollback"):
        return "rolled_back", f"rolled back to {champion}"
    if champion != old_champion and champion in was:
        tail = f" over {old_champion}" if old_champion else ""
        return "promoted", f"promoted {champion}{tail}"
    added = [f"{ref} as {role}" for ref, role in now.items() if ref not in was]
    removed = [ref for ref in was if ref not in now]
    moved = [f"{ref} {was[ref]}→{role}" for ref, role in now.items() if was.get(ref, role) != role]
    if added or removed or moved:
        parts = []
        if added:
            parts.append("deployed " + ", ".join(added))
        if moved:
            parts.append(", ".join(moved))
        if removed:
            parts.append("retired " + ", ".join(removed))
        return "deployed", "; ".join(parts)
    if after.policy != before.policy:
        return "policy", f"policy {after.policy.kind.value}"
    if after.deadline_ms != before.deadline_ms:
        return "changed", f"deadline {before.deadline_ms}→{after.deadline_ms} ms"
    return "changed", "deployment updated"


def timeline(
    descriptors: Sequence[ModelDescriptor], history: Sequence[Deployment], limit: int = 100
) -> list[dict[str, Any]]:
    """The events of one service, newest first, at most ``limit`` (see the module doc)."""
    events: list[dict[str, Any]] = [
        {
            "at": d.lineage.created_at,
            "kind": "published",
            "model": str(d.ref),
            "text": f"published {d.ref} ({d.format})",
            "reason": d.lineage.created_by and f"by {d.lineage.created_by}",
            "revision": None,
        }
        for d in descriptors
    ]
    before: Deployment | None = None
    for record in history:
        kind, text = _changes(before, record)
        events.append(
            {
                "at": record.created_at,
                "kind": kind,
                "model": str(record.champion.ref) if record.champion else None,
                "text": text,
                "reason": record.reason,
                "revision": record.revision,
            }
        )
        before = record
    # Stable for equal times: a publish precedes the deployment that names it.
    order = {"published": 0}
    events.sort(key=lambda e: (e["at"], order.get(e["kind"], 1), e["revision"] or 0))
    return list(reversed(events))[:limit]
