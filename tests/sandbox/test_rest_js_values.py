"""JavaScript value semantics the REST answers depend on: `parseInt` and `Date.parse`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from sandbox.jsvalues import js_parse_int, parse_js_date


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[("42", 42), (" 7", 7), ("-3", -3), ("+5", 5), ("5abc", 5), (2.9, 2), (-2.5, -2), (1e21, 1), (6, 6)],
        *[("abc", None), ("", None), ("+-5", None), (None, None), (True, None), ("٣", None)],
    ],
)
def test_js_parse_int(value: Any, expected: int | None) -> None:
    assert js_parse_int(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-06-05T12:00:00.000Z", datetime(2024, 6, 5, 12, tzinfo=UTC)),
        ("2024-06-05", datetime(2024, 6, 5, tzinfo=UTC)),
        ("2024-06-05T14:00:00+02:00", datetime(2024, 6, 5, 14, tzinfo=timezone(timedelta(hours=2)))),
        ("Wed, 05 Jun 2024 12:00:00 GMT", datetime(2024, 6, 5, 12, tzinfo=UTC)),
    ],
)
def test_parse_js_date(text: str, expected: datetime) -> None:
    assert parse_js_date(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "2024-13-01", None, 1717600000000])
def test_parse_js_date_invalid(text: Any) -> None:
    assert parse_js_date(text) is None
