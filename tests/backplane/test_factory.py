"""Backplane URLs: which engine and which directory or brokers each one names."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelstream.backplane.factory import kafka_brokers, open_backplane, sqlite_path
from modelstream.backplane.memory import MemoryBackplane
from modelstream.backplane.sqlite.engine import SqliteBackplane
from modelstream.errors import ConfigurationError
from modelstream.settings import DEFAULT_BACKPLANE, Settings


def test_three_slashes_is_an_absolute_directory() -> None:
    assert sqlite_path("sqlite:///var/lib/ms") == Path("/var/lib/ms")
    assert sqlite_path("sqlite:///var/lib/ms").is_absolute()


def test_two_slashes_is_a_directory_relative_to_the_working_directory() -> None:
    assert sqlite_path("sqlite://data/bp") == Path("data/bp")
    assert not sqlite_path("sqlite://data/bp").is_absolute()


def test_the_default_backplane_is_dot_modelstream_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELSTREAM_BACKPLANE", raising=False)
    assert Settings().backplane == DEFAULT_BACKPLANE == "sqlite://./.modelstream"
    assert sqlite_path(DEFAULT_BACKPLANE) == Path(".modelstream")
    monkeypatch.chdir(tmp_path)
    backplane = open_backplane(DEFAULT_BACKPLANE)
    try:
        assert isinstance(backplane, SqliteBackplane)
        backplane.create_topic("here", 1)
    finally:
        backplane.close()
    assert (tmp_path / ".modelstream").is_dir()


def test_a_relative_sqlite_url_opens_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    backplane = open_backplane("sqlite://nested/bp")
    backplane.close()
    assert (tmp_path / "nested" / "bp").is_dir()


def test_kafka_urls_name_one_or_several_brokers() -> None:
    assert kafka_brokers("kafka://k1:9092") == "k1:9092"
    assert kafka_brokers("kafka://k1:9092,k2:9093,10.0.0.3:19092/") == (
        "k1:9092,k2:9093,10.0.0.3:19092"
    )
    assert kafka_brokers("KAFKA://[::1]:9092") == "[::1]:9092"


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        ("kafka://k1", "'k1' needs a port"),
        ("kafka://k1:9092,k2", "'k2' needs a port"),
        ("kafka://k1:", "'k1:' needs a port"),
        ("kafka://", "kafka:// needs brokers"),
        ("kafka:k1:9092", "must start with kafka://"),
    ],
)
def test_bad_kafka_urls_say_how_to_write_them(url: str, fix: str) -> None:
    with pytest.raises(ConfigurationError, match=fix) as raised:
        kafka_brokers(url)
    assert "kafka://host:9092" in str(raised.value) or "kafka://host:port" in str(raised.value)


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        ("sqlite://", "sqlite:// needs a directory"),
        ("sqlite:/data", "must start with sqlite://"),
    ],
)
def test_bad_sqlite_urls_say_how_to_write_them(url: str, fix: str) -> None:
    with pytest.raises(ConfigurationError, match=fix):
        sqlite_path(url)


def test_the_scheme_chooses_the_engine() -> None:
    backplane = open_backplane("memory://")
    assert isinstance(backplane, MemoryBackplane)
    backplane.close()


@pytest.mark.parametrize("url", ["", "redis://localhost", "./data", "sqlite:/data"])
def test_unknown_or_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="memory://, sqlite://path or kafka://"):
        open_backplane(url, Settings(backplane="memory://"))
