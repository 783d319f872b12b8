"""JavaScript value semantics that Rocket.Chat's answers depend on (`parseInt`, `Date.parse`)."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from typing import Any


def js_parse_int(value: Any) -> int | None:
    """`parseInt(String(value), 10)`; None for NaN."""
    if isinstance(value, bool) or value is None:
        return None
    # String(value): integral numbers print without ".0"; from 1e21 on JS uses exponent notation.
    integral = isinstance(value, float) and value.is_integer() and abs(value) < 1e21
    text = str(int(value)) if integral else str(value)
    text = text.lstrip()
    sign = -1 if text.startswith("-") else 1
    if text[:1] in ("+", "-"):
        text = text[1:]
    digits = ""
    for char in text[:1000]:
        if not char.isdigit() or not char.isascii():
            break
        digits += char
    return sign * int(digits) if digits else None


def parse_js_date(text: Any) -> datetime | None:
    """`new Date(text)` for the forms clients send (ISO 8601, RFC 2822); None where
    `Date.parse` gives NaN. A date-time without offset is taken as UTC (the server's zone)."""
    if not isinstance(text, str) or not text.strip():
        return None
    candidate = text.strip()
    try:
        parsed = datetime.fromisoformat(candidate.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(candidate)
        except (TypeError, ValueError, IndexError):
            return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
