"""What ``serve``'s loop options mean: LoopConfig defaults and validation, CLI refusals."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from modelstream.cli.app import app
from modelstream.errors import ConfigurationError
from modelstream.gateway.loop import LoopConfig

FN = "tests.training.functions:train_logreg"


def test_by_default_the_loop_archives_and_monitors_but_neither_trains_nor_promotes() -> None:
    loop = LoopConfig()
    assert loop.trainer_config() is None and not loop.promotes
    assert loop.archive_flush_seconds <= 1.0  # the trainer and promoter see recent data


def test_a_training_function_retrains_the_champion_name_as_a_challenger_and_promotes() -> None:
    loop = LoopConfig(train=FN, train_every_labels=100, train_window_seconds=60)
    config = loop.trainer_config()
    assert config is not None and config.function == FN and config.every_labels == 100
    assert config.output_name is None and config.output_for("gbm") == "gbm"
    assert config.deploy_as_challenger and config.window_ms == 60_000
    assert loop.promotes
    assert not LoopConfig(train=FN, auto_promote=False).promotes
    assert LoopConfig(auto_promote=True).promotes  # promotion without a trainer


@pytest.mark.parametrize(
    "options",
    [
        {"train": FN, "train_every_labels": None},
        {"alpha": 1.5},
        {"min_labels": 0},
        {"archive_flush_seconds": 0},
    ],
)
def test_bad_loop_options_are_refused_at_once(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        LoopConfig(**options)  # type: ignore[arg-type]


def test_serve_refuses_training_without_the_archive() -> None:
    done = CliRunner().invoke(
        app, ["--backplane", "memory://", "serve", "--train", FN, "--no-archive"]
    )
    assert done.exit_code == 1 and "--no-archive" in done.stderr
