"""``name@version``: how a model version is named everywhere (CLI, topics, HTTP)."""

from __future__ import annotations

from dataclasses import dataclass

from modelstream.errors import ConfigurationError
from modelstream.wire.topics import check_name


@dataclass(frozen=True, slots=True, order=True)
class ModelRef:
    """One version of one model of a service."""

    name: str
    version: int

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def key(self) -> bytes:
        """The key of this version's descriptor on the compacted ``models`` topic."""
        return str(self).encode()

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """Parse ``name@version``; raises ``ConfigurationError`` saying the expected form."""
        name, sep, version = text.strip().rpartition("@")
        if not sep or not version.isdigit() or int(version) < 1:
            raise ConfigurationError(
                f"{text!r} is not a model version: write NAME@VERSION, e.g. gbm@3"
            )
        return cls(check_name("model", name), int(version))
