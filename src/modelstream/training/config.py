"""What a trainer does: :class:`TrainerConfig` (frozen, validated on construction).

**A new version of the champion's name.** By default (``output_name=None``) a retrained
model is published as the next version of the champion's name (champion ``gbm@3`` ->
``gbm@4``), so its lineage continues the champion's (``parent_version``), and with
``deploy_as_challenger`` it is deployed *beside* the champion as a challenger: a
deployment may hold several live versions of one name, each scoring in its own lane
(see :mod:`modelstream.models.deployment`). Promoting it makes it the champion; the
old version stays live as a challenger until the next retrain replaces it.
``output_name`` publishes under another name instead (a separate line of versions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from modelstream.errors import ConfigurationError
from modelstream.wire.topics import check_name

InputKind = Literal["inputs", "features"]
# The tensor name a converted model takes, per input kind (see scoring/batcher's mapping).
INPUT_TENSOR: dict[str, str] = {"inputs": "input", "features": "features"}

ChampionScores = Literal["archive", "rescore"]


@dataclass(frozen=True, slots=True)
class TrainerConfig:
    """Settings of one trainer of one service.

    * ``function``: the training function, ``module:function`` (see :mod:`.function`).
    * ``output_name``: the model name versions are published under (see the module doc);
      ``None``: the champion's name (a service without a champion needs one).
    * ``window_ms``: train on requests whose event time is in ``[now - window_ms, now)``;
      ``None``: the whole archive.
    * ``holdout_fraction``: the most recent share of the window kept out of training and
      used to compare the new model with the champion.
    * ``margin``: publish unless the new model's primary holdout metric (accuracy, or MAE
      for regressors) is worse than the champion's by more than this (absolute units).
    * ``every_seconds`` / ``every_labels``: the triggers of :meth:`Trainer.start` (either or
      both); a cycle runs when one fires.
    * ``publish`` / ``deploy_as_challenger``: whether an accepted model is published, and
      then deployed beside the champion as a challenger.
    * ``warm_start``: pass the parent version's checkpointed estimator to the function
      (which must accept ``parent``).
    * ``inputs``: train on the request inputs (``input_i``) or featurizer values (``f_*``).
    * ``min_rows``: fewer labelled rows than this in the window: skip the cycle.
    * ``champion_scores``: the champion's holdout predictions come from its archived
      scores (``archive``, falling back to rescoring when it has none) or from scoring the
      holdout with the loaded champion (``rescore``).
    * ``checkpoint_dir``: the checkpoint store (default: see :mod:`.checkpoints`).
    * ``sign_key``: an Ed25519 private key to sign published versions with.
    """

    function: str
    output_name: str | None = None
    window_ms: int | None = None
    holdout_fraction: float = 0.2
    margin: float = 0.0
    every_seconds: float | None = None
    every_labels: int | None = None
    publish: bool = True
    deploy_as_challenger: bool = False
    warm_start: bool = False
    inputs: InputKind = "inputs"
    min_rows: int = 20
    champion_scores: ChampionScores = "archive"
    checkpoint_dir: Path | None = None
    sign_key: Path | None = None
    feature_set: str | None = None
    trusted_types: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.output_name is not None:
            check_name("model", self.output_name)
        if self.window_ms is not None and self.window_ms <= 0:
            raise ConfigurationError(f"the training window must be positive, got {self.window_ms}")
        if not 0 < self.holdout_fraction < 1:
            raise ConfigurationError(
                f"holdout_fraction must be between 0 and 1, got {self.holdout_fraction}"
            )
        if self.margin < 0:
            raise ConfigurationError(f"margin must be 0 or more, got {self.margin}")
        if self.every_seconds is not None and self.every_seconds <= 0:
            raise ConfigurationError("every_seconds must be positive")
        if self.every_labels is not None and self.every_labels < 1:
            raise ConfigurationError("every_labels must be 1 or more")
        if self.inputs not in INPUT_TENSOR:
            raise ConfigurationError(f"inputs must be 'inputs' or 'features', got {self.inputs!r}")
        if self.min_rows < 2:
            raise ConfigurationError("min_rows must be 2 or more (a training and a holdout row)")
        if self.champion_scores not in ("archive", "rescore"):
            raise ConfigurationError("champion_scores must be 'archive' or 'rescore'")
        if self.deploy_as_challenger and not self.publish:
            raise ConfigurationError("deploy_as_challenger needs publish")

    def output_for(self, champion: str | None) -> str:
        """The model name to publish under, given the champion's name (if any)."""
        if self.output_name is not None:
            return self.output_name
        if champion is None:
            raise ConfigurationError(
                "the service has no champion to name the retrained model after: set the "
                "output model name (--output-name)"
            )
        return champion
