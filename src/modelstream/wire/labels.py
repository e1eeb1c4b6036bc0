"""The record on ``<service>.labels``: ground truth, arriving late.

A label names what it labels in one of two ways:

* **by request id** -- ``request_id`` is set: the label is the truth for that one request
  (and so for every model's score of it). The record's key is the request id, so the
  label lands in the same partition number as the request and its scores.
* **by entity and event time** -- ``request_id`` is null, ``entity`` and ``event_time``
  are set: the label is the truth for the request(s) of that entity whose event time is
  exactly ``event_time`` (the way labels arrive from a system that never saw request ids,
  e.g. "truck-7 failed at 12:00"). The key is the entity.

Wire format (JSON)::

    {
      "service": "fraud",               required
      "request_id": "0f8c...",          required unless entity and event_time are given
      "entity": "truck-7",              optional (required without request_id)
      "event_time": 1763790000000,      optional ms (required without request_id)
      "value": 1,                       required: a class (int or string) or a number
      "labelled_at": 1763795000000,     required ms: when the truth became known
      "source": "chargebacks"           optional: where the truth came from
    }

A later label for the same key corrects an earlier one: readers keep the label with the
greatest ``labelled_at``. JSON booleans are read as the classes 0 and 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelstream.errors import DecodeError
from modelstream.wire import codec

_KIND = "label"

LabelValue = int | float | str


@dataclass(frozen=True, slots=True)
class Label:
    """Ground truth for one request, or for an entity at an event time (see module)."""

    service: str
    value: LabelValue
    labelled_at: int
    request_id: str | None = None
    entity: str | None = None
    event_time: int | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.request_id is None and (self.entity is None or self.event_time is None):
            raise DecodeError(
                "a label needs a request_id, or both entity and event_time, to say what it labels"
            )
        if isinstance(self.value, bool):
            # A bool is an int in Python; normalise so equality with 0/1 predictions holds.
            object.__setattr__(self, "value", int(self.value))
        elif not isinstance(self.value, int | float | str):
            raise DecodeError(
                f"label value must be an int, a number or a string, got {type(self.value).__name__}"
            )

    @property
    def key(self) -> bytes:
        """The record key: the request id, else the entity."""
        return (self.request_id if self.request_id is not None else str(self.entity)).encode()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "service": self.service,
            "value": self.value,
            "labelled_at": self.labelled_at,
        }
        for name in ("request_id", "entity", "event_time", "source"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def encode(self) -> bytes:
        return codec.dumps(self.to_json())


def decode_label(data: bytes) -> Label:
    """Decode and validate a label record; raises ``DecodeError`` saying what is wrong."""
    obj = codec.loads(data, _KIND)
    value = obj.get("value")
    if value is None:
        raise DecodeError("label record lacks required field 'value'")
    if not isinstance(value, int | float | str):
        raise DecodeError(
            f"label field 'value' must be an int, a number or a string, got {type(value).__name__}"
        )
    return Label(
        service=codec.field(obj, "service", str, _KIND),
        value=value,
        labelled_at=codec.field(obj, "labelled_at", int, _KIND),
        request_id=codec.optional(obj, "request_id", str, _KIND),
        entity=codec.optional(obj, "entity", str, _KIND),
        event_time=codec.optional(obj, "event_time", int, _KIND),
        source=codec.optional(obj, "source", str, _KIND),
    )
