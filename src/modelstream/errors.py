"""The exception tree of modelstream.

Every error the system raises on purpose is a :class:`ModelstreamError`. Messages are
written for the operator: they say what went wrong *and what to do about it*. Domain
errors never carry transport details such as HTTP status codes; the gateway maps the
classes below to status codes in one place (``modelstream.gateway.errors``).

The tree::

    ModelstreamError
    ├── ConfigurationError          a setting, URL or spec the operator must fix
    ├── BackplaneError              the stream backplane could not do what was asked
    │   ├── BackplaneUnavailable    the engine cannot be reached or written (broker down, disk)
    │   ├── TopicNotFound
    │   ├── RecordTooLarge          a record above the engine's size limit (nothing written)
    │   └── ConsumerClosed
    ├── DecodeError                 bytes on a topic or in a request that cannot be read
    ├── InvalidRequest              a request that is readable but wrong (shape, dtype, field)
    ├── ServiceNotFound
    ├── NotReady                    the service exists but cannot answer yet
    ├── DeadlineExceeded            no acceptable answer by the request's deadline
    ├── Unauthorized                a management call without the configured token
    ├── ModelError
    │   ├── ModelNotFound
    │   ├── ModelLoadError          the bytes do not load in their declared format
    │   ├── IntegrityError          the sha256 of the bytes does not match the descriptor
    │   ├── SignatureError          unsigned where signatures are required, or tampered
    │   ├── SchemaMismatch          the model's inputs or outputs differ from the schema
    │   ├── ModelNotAllowed         the service's policy forbids the format (python, river)
    │   └── ScoringError            the model raised or timed out while scoring
    └── FeatureError                a feature definition or feature state problem
"""

from __future__ import annotations


class ModelstreamError(Exception):
    """Root of every error modelstream raises on purpose."""


class ConfigurationError(ModelstreamError):
    """A setting, URL, file or spec is wrong; the operator must change it."""


class BackplaneError(ModelstreamError):
    """The backplane could not carry out an operation."""


class BackplaneUnavailable(BackplaneError):
    """The backplane's engine cannot be reached or written (broker down, disk full)."""


class TopicNotFound(BackplaneError):
    """A topic that must exist does not."""

    def __init__(self, topic: str) -> None:
        super().__init__(
            f"topic {topic!r} does not exist; create it with "
            f"`modelstream topics create {topic} --partitions N` or check the name"
        )
        self.topic = topic


class RecordTooLarge(BackplaneError):
    """A record is larger than the backplane accepts; no record of the call was written."""

    def __init__(self, topic: str, size: int, limit: int) -> None:
        super().__init__(
            f"a record of {size} bytes for {topic!r} is larger than the backplane accepts "
            f"({limit} bytes): send less in one request, or raise the limit with "
            "MODELSTREAM_MAX_RECORD_BYTES (on Kafka, raise the broker's message.max.bytes "
            "first)"
        )
        self.topic, self.size, self.limit = topic, size, limit


class ConsumerClosed(BackplaneError):
    """A consumer was used after :meth:`close`."""


class DecodeError(ModelstreamError):
    """Bytes that cannot be decoded into the record type the topic carries."""


class InvalidRequest(ModelstreamError):
    """A request that decodes but is wrong: missing fields, bad shape or datatype."""


class ServiceNotFound(ModelstreamError):
    """No deployment exists for the named service."""

    def __init__(self, service: str) -> None:
        super().__init__(
            f"service {service!r} has no deployment; deploy one with "
            f"`modelstream deploy --service {service} --champion NAME@VERSION`"
        )
        self.service = service


class NotReady(ModelstreamError):
    """The service exists but cannot answer yet (no model loaded, role still starting)."""


class DeadlineExceeded(ModelstreamError):
    """No acceptable answer arrived by the request's deadline and no fallback is set."""


class Unauthorized(ModelstreamError):
    """A management call without the configured API token."""


class ModelError(ModelstreamError):
    """A model cannot be found, loaded, trusted or run."""


class ModelNotFound(ModelError):
    """No descriptor exists for the named model version."""


class ModelLoadError(ModelError):
    """The model bytes do not load in their declared format."""


class IntegrityError(ModelError):
    """The sha256 of the model bytes differs from the descriptor's."""


class SignatureError(ModelError):
    """A signature is missing where required, or does not verify."""


class SchemaMismatch(ModelError):
    """A model's inputs or outputs differ from the declared schema or the request."""


class ModelNotAllowed(ModelError):
    """The service's policy forbids loading this model (e.g. ``python`` without allow_python)."""


class ScoringError(ModelError):
    """A model raised, or did not answer within its timeout, while scoring."""


class FeatureError(ModelstreamError):
    """A feature definition is invalid, or feature state cannot be read or restored."""
