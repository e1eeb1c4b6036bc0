"""Open a backplane from its URL: ``memory://``, ``sqlite://path`` or ``kafka://hosts``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from modelstream.backplane.port import Backplane
from modelstream.errors import ConfigurationError
from modelstream.settings import Settings

SCHEMES = ("memory", "sqlite", "kafka")


def _after(prefix: str, url: str) -> str:
    """What follows ``prefix`` (``scheme://``, any case) in ``url``; raises if it is absent.

    Slicing blindly would read ``sqlite:/data`` as the directory ``ata``.
    """
    if url[: len(prefix)].lower() != prefix:
        raise ConfigurationError(
            f"backplane URL {url!r} must start with {prefix}: "
            "use memory://, sqlite://path or kafka://host:port"
        )
    return url[len(prefix) :]


def sqlite_path(url: str) -> Path:
    """The directory of a ``sqlite://`` URL: ``sqlite:///abs/dir`` or ``sqlite://rel/dir``.

    A relative directory is relative to the working directory of the process.
    """
    rest = _after("sqlite://", url)
    if not rest:
        raise ConfigurationError(
            "sqlite:// needs a directory: use sqlite:///absolute/dir or sqlite://relative/dir"
        )
    return Path(rest)


def kafka_brokers(url: str) -> str:
    """The ``host:port[,host:port]`` bootstrap list of a ``kafka://`` URL."""
    hosts = _after("kafka://", url).strip("/")
    if not hosts:
        raise ConfigurationError("kafka:// needs brokers: use kafka://host:9092[,host2:9092]")
    for host in hosts.split(","):
        _, sep, port = host.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigurationError(
                f"kafka broker {host!r} needs a port: use kafka://host:9092[,host2:9092]"
            )
    return hosts


def open_backplane(url: str, settings: Settings | None = None) -> Backplane:
    """Open the backplane named by ``url``; raises ``ConfigurationError`` on a bad URL."""
    settings = settings or Settings(backplane=url)
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from modelstream.backplane.memory import MemoryBackplane

        return MemoryBackplane(settings)
    if scheme == "sqlite":
        from modelstream.backplane.sqlite.engine import SqliteBackplane

        return SqliteBackplane(sqlite_path(url), settings)
    if scheme == "kafka":
        from modelstream.backplane.kafka.engine import KafkaBackplane

        return KafkaBackplane(kafka_brokers(url), settings)
    raise ConfigurationError(
        f"unknown backplane URL {url!r}: use memory://, sqlite://path or kafka://host:port"
    )
