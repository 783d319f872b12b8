"""The small part of Meteor's EJSON that Rocket.Chat puts on the wire: dates.

Over DDP, Rocket.Chat sends dates as `{"$date": <milliseconds since the epoch>}`; over REST it
sends ISO 8601 strings. Decoding is lenient (it returns None rather than raising) because the
input comes from the server; encoding is strict because its input comes from our own code.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def decode_date(value: Any) -> datetime | None:
    """An aware UTC datetime from `{"$date": ms}`, an ISO 8601 string or a datetime; else None.

    Also accepts the canonical EJSON forms `{"$date": "<iso>"}` and `{"$date": {"$numberLong": "<ms>"}}`.
    Naive values are taken to be UTC, which is what Rocket.Chat means by them.
    """
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, str):
        return _parse_iso(value)
    if isinstance(value, Mapping) and len(value) == 1 and "$date" in value:
        inner = value["$date"]
        if isinstance(inner, Mapping) and len(inner) == 1 and isinstance(inner.get("$numberLong"), str):
            try:
                inner = int(inner["$numberLong"])
            except ValueError:
                return None
        if isinstance(inner, str):
            return _parse_iso(inner)
        if isinstance(inner, int | float) and not isinstance(inner, bool):
            return _from_millis(inner)
    return None


def encode_date(value: datetime) -> dict[str, int]:
    """`{"$date": ms}` for an aware datetime. A naive one is a bug in our code, so it raises."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("refusing to encode a naive datetime; pass an aware one (e.g. datetime.now(UTC))")
    # Integer arithmetic: float timestamps lose microseconds far from 1970.
    return {"$date": (value - _EPOCH + timedelta(microseconds=500)) // timedelta(milliseconds=1)}


def encode(value: Any) -> Any:
    """A JSON-ready copy of `value` with every datetime replaced by its EJSON form.

    Mappings and sequences (lists and tuples) are copied recursively; other values pass through
    unchanged for `json.dumps` to accept or reject.
    """
    if isinstance(value, datetime):
        return encode_date(value)
    if isinstance(value, Mapping):
        return {key: encode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    return value


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    return value


def _parse_iso(text: str) -> datetime | None:
    try:
        return _aware(datetime.fromisoformat(text.strip()))
    except ValueError:
        return None


def _from_millis(millis: float) -> datetime | None:
    try:
        return _EPOCH + timedelta(milliseconds=millis)
    except (OverflowError, OSError, ValueError):
        return None
