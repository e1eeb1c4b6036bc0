"""``consensus``: majority vote (classes) or mean (numbers) over at least k of n answers.

``Policy.min_answers`` is k; n is the number of choosable live model versions (two
versions of one name are two voters). ``Policy.combine``
is ``vote`` or ``mean``:

* ``vote`` compares one output tensor per answer: the one named ``label`` when the model
  has it (what classifiers converted by skl2onnx emit), else the first output. Equal
  values are one class. The answer returned is the outputs of the best-ranked model
  (deployment preference order) that voted for the winning class, so its other outputs
  (probabilities) stay consistent with the label. A tie is broken the same way.
* ``mean`` averages, element-wise, the first numeric output tensor of the best-ranked
  answer over every answer whose tensor of that name has the same shape. The answer is
  the best-ranked model's outputs with that tensor replaced by the mean (``FP64``); the
  reported model is that best-ranked contributor.

It decides as soon as the outcome is settled: for a vote, when k answers arrived and the
leading class cannot be caught by the models still awaited; for a mean, when k arrived
and no awaited model remains (every new value would move the mean). At the deadline it
decides with whatever arrived if that is at least k, else the fallback answers. Models
whose wait ran out are no longer awaited, as in ``preference``.
"""

from __future__ import annotations

from collections import Counter

from modelstream.models.deployment import Deployment, LiveModel, PolicyKind
from modelstream.rendezvous.mailbox import Answer, Mailbox
from modelstream.rendezvous.policies import Decision, all_answered, choosable
from modelstream.wire.tensors import Tensor

_NUMERIC = frozenset(
    {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
    | {"FP16", "FP32", "FP64"}
)


def vote_tensor(answer: Answer) -> Tensor | None:
    """The tensor a vote compares: ``label`` if present, else the first output."""
    outputs = answer.score.outputs or ()
    return next((t for t in outputs if t.name == "label"), outputs[0] if outputs else None)


def mean_tensor_name(answer: Answer) -> str | None:
    """The name of the first numeric output of ``answer`` (what ``mean`` averages)."""
    return next((t.name for t in answer.score.outputs or () if t.datatype in _NUMERIC), None)


class ConsensusPolicy:
    """``consensus`` (see the module docstring)."""

    name = PolicyKind.CONSENSUS.value

    def _ranked_ok(self, mailbox: Mailbox, deployment: Deployment) -> list[Answer]:
        """Ok answers of choosable live models, best-ranked first."""
        out = []
        for ref in deployment.preference_order():
            live = deployment.live_ref(ref)
            answer = None if live is None else mailbox.answer_for(live.ref)
            if answer is not None and answer.ok:
                out.append(answer)
        return out

    def _awaited(self, mailbox: Mailbox, models: list[LiveModel], now: int) -> list[LiveModel]:
        if now >= mailbox.deadline:
            return []
        return [
            m for m in models if mailbox.answer_for(m.ref) is None and now < mailbox.wait_until(m)
        ]

    def decide(self, mailbox: Mailbox, deployment: Deployment, now_ms: int) -> Decision | None:
        models = choosable(deployment)
        k = max(1, deployment.policy.min_answers)
        awaited = len(self._awaited(mailbox, models, now_ms))
        ranked = self._ranked_ok(mailbox, deployment)
        if deployment.policy.combine == "mean":
            decision = self._mean(ranked, k, awaited)
        else:
            decision = self._vote(ranked, k, awaited, n=len(models))
        if decision is not None:
            return decision
        if models and all_answered(mailbox, models):
            return Decision.none(f"fewer than {k} of {len(models)} models agreed or answered")
        return None

    def _vote(self, ranked: list[Answer], k: int, awaited: int, n: int) -> Decision | None:
        classes: dict[tuple[object, ...], list[Answer]] = {}
        for answer in ranked:
            tensor = vote_tensor(answer)
            if tensor is not None:
                classes.setdefault(tensor.data, []).append(answer)
        voters = sum(len(v) for v in classes.values())
        if voters < k:
            return None
        counts = Counter({key: len(v) for key, v in classes.items()})
        (_, top_count), *rest = counts.most_common()
        runner_up = rest[0][1] if rest else 0
        if top_count <= runner_up + awaited and awaited > 0:
            return None  # the models still awaited could change the winner
        # Ties: the class of the best-ranked voter wins (ranked is best first).
        best = min(
            (key for key, c in counts.items() if c == top_count),
            key=lambda key: ranked.index(classes[key][0]),
        )
        winner = classes[best][0]
        return Decision.of(winner, f"vote {top_count} of {voters} answers ({n} live)")

    def _mean(self, ranked: list[Answer], k: int, awaited: int) -> Decision | None:
        if awaited or not ranked:
            return None
        first = ranked[0]
        name = mean_tensor_name(first)
        outputs = first.score.outputs or ()
        base = next((t for t in outputs if t.name == name), None)
        if base is None:
            return None
        rows = [
            t.data
            for answer in ranked
            for t in answer.score.outputs or ()
            if t.name == name and t.shape == base.shape
        ]
        if len(rows) < k:
            return None
        means = tuple(
            sum(float(v) for v in column) / len(rows) for column in zip(*rows, strict=True)
        )
        combined = Tensor(base.name, "FP64", base.shape, means)
        replaced = tuple(combined if t.name == name else t for t in outputs)
        decision = Decision.of(first, f"mean of {len(rows)} answers")
        return Decision(replaced, decision.model, decision.reason)

    def next_check(self, mailbox: Mailbox, deployment: Deployment, now_ms: int) -> int | None:
        times = [
            mailbox.wait_until(m)
            for m in self._awaited(mailbox, choosable(deployment), now_ms)
            if mailbox.wait_until(m) < mailbox.deadline
        ]
        return min(times, default=None)
