"""Automatic promotion: a challenger becomes champion when it beats the champion with
significance on at least ``min_labels`` labelled requests.

The evidence is the archive's joined frame (requests ⨝ labels ⨝ every model's scores,
:meth:`~modelstream.archive.reader.ArchiveReader.joined`), judged by
:func:`modelstream.monitoring.compare.compare` (McNemar for classification, a paired
bootstrap otherwise) on the requests both models scored successfully. Rules:

* candidates are the deployment's challengers and shadows (or the one asked for),
  each compared with the champion on its own paired rows;
* a candidate qualifies when it has at least ``min_labels`` paired labelled requests and
  ``compare`` names it the winner at ``alpha``; among several, the smallest p-value wins;
* :func:`auto_promote` promotes the winner with :meth:`Registry.promote` (so the old
  champion becomes a challenger) and a reason stating the evidence; that record is the
  audit trail. Without a qualifying candidate nothing is written and the verdict says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from modelstream.archive.reader import ArchiveReader
from modelstream.errors import ConfigurationError
from modelstream.models.deployment import Deployment, Role
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.monitoring.compare import Comparison, compare


@dataclass(frozen=True, slots=True)
class PromotionVerdict:
    """Whether to promote ``challenger`` over ``champion``, and why."""

    champion: ModelRef
    challenger: ModelRef | None
    promote: bool
    reason: str
    comparison: Comparison | None = None
    deployment: Deployment | None = None  # the record written, when promoted


def _evidence(c: Comparison) -> str:
    a, b = c.a.primary, c.b.primary
    return (
        f"{a.name} {b.value:.4f} vs {a.value:.4f} on {c.n_paired} labelled requests, "
        f"{c.test} p = {c.p_value:.3g} < {c.alpha:g}"
    )


def judge(
    joined: pd.DataFrame,
    deployment: Deployment,
    *,
    min_labels: int = 200,
    alpha: float = 0.05,
    challenger: ModelRef | None = None,
) -> PromotionVerdict:
    """The verdict on ``joined`` for ``deployment`` (see the module docstring)."""
    champion = deployment.champion
    if champion is None:
        raise ConfigurationError(f"service {deployment.service} has no champion to compare with")
    if challenger is not None:
        candidates = [challenger]
    else:
        candidates = [m.ref for m in deployment.models if m.role in (Role.CHALLENGER, Role.SHADOW)]
    best: Comparison | None = None
    notes: list[str] = []
    for ref in candidates:
        if ref == champion.ref:
            continue
        try:
            result = compare(joined, champion.ref, ref, alpha=alpha)
        except (ConfigurationError, KeyError) as exc:
            notes.append(f"{ref}: {exc}")
            continue
        if result.n_paired < min_labels:
            notes.append(f"{ref}: {result.n_paired} labelled requests < {min_labels}")
        elif result.winner != ref:
            who = "the champion" if result.winner == champion.ref else "no one"
            notes.append(f"{ref}: {who} wins (p = {result.p_value:.3g}, alpha {alpha:g})")
        elif best is None or result.p_value < best.p_value:
            best = result
    if best is None:
        why = "; ".join(notes) or "no challenger is live"
        return PromotionVerdict(champion.ref, None, False, f"no promotion: {why}")
    reason = f"auto-promote {best.b.ref} over {champion.ref}: {_evidence(best)}"
    return PromotionVerdict(champion.ref, best.b.ref, True, reason, best)


def auto_promote(
    registry: Registry,
    reader: ArchiveReader,
    service: str,
    *,
    min_labels: int = 200,
    alpha: float = 0.05,
    challenger: ModelRef | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    dry_run: bool = False,
) -> PromotionVerdict:
    """Judge the archive of ``service`` and promote the winner unless ``dry_run``."""
    deployment = registry.deployment(service)
    refs = [m.ref for m in deployment.models]
    joined = reader.joined(service, start, end, models=refs, labelled_only=True)
    if joined.empty:
        champion = deployment.champion
        if champion is None:
            raise ConfigurationError(f"service {service} has no champion to compare with")
        why = f"no promotion: no labelled archived requests of {service} in this window"
        return PromotionVerdict(champion.ref, None, False, why)
    verdict = judge(joined, deployment, min_labels=min_labels, alpha=alpha, challenger=challenger)
    if not verdict.promote or dry_run or verdict.challenger is None:
        return verdict
    written = registry.promote(service, verdict.challenger, reason=verdict.reason)
    return PromotionVerdict(
        verdict.champion, verdict.challenger, True, verdict.reason, verdict.comparison, written
    )
