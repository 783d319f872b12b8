from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.rocketchat import ejson

MOMENT = datetime(2024, 6, 5, 15, 6, 40, 123000, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        {"$date": 1717600000123},
        {"$date": 1717600000123.0},
        {"$date": {"$numberLong": "1717600000123"}},
        {"$date": "2024-06-05T15:06:40.123Z"},
        "2024-06-05T15:06:40.123Z",
        "2024-06-05T15:06:40.123+00:00",
        "2024-06-05T17:06:40.123+02:00",
        "2024-06-05T15:06:40.123",  # naive ISO from a REST API means UTC
        MOMENT,
        MOMENT.replace(tzinfo=None),
    ],
)
def test_decode_date_forms(value: Any) -> None:
    decoded = ejson.decode_date(value)
    assert decoded == MOMENT
    assert decoded is not None and decoded.tzinfo is not None


@pytest.mark.parametrize(
    "value",
    [
        None,
        1717600000123,  # a bare number is not an EJSON date
        True,
        "yesterday",
        "",
        {"$date": None},
        {"$date": True},
        {"$date": 10**30},
        {"$date": float("nan")},
        {"$date": {"$numberLong": "x"}},
        {"$date": 1, "other": 2},
        [{"$date": 1}],
    ],
)
def test_decode_date_rejects_without_raising(value: Any) -> None:
    assert ejson.decode_date(value) is None


def test_encode_date() -> None:
    assert ejson.encode_date(MOMENT) == {"$date": 1717600000123}
    assert ejson.encode_date(MOMENT.astimezone(timezone(timedelta(hours=-5)))) == {"$date": 1717600000123}


def test_encode_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        ejson.encode_date(MOMENT.replace(tzinfo=None))


def test_encode_nested() -> None:
    assert ejson.encode({"since": MOMENT, "list": (MOMENT, 1, "a"), "n": None}) == {
        "since": {"$date": 1717600000123},
        "list": [{"$date": 1717600000123}, 1, "a"],
        "n": None,
    }


@given(st.datetimes(timezones=st.just(UTC), min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1)))
def test_date_round_trip_to_the_millisecond(moment: datetime) -> None:
    decoded = ejson.decode_date(ejson.encode_date(moment))
    assert decoded is not None
    assert abs(decoded - moment) <= timedelta(microseconds=500)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(), st.lists, max_leaves=5))
def test_decode_date_never_raises(value: Any) -> None:
    ejson.decode_date(value)
    ejson.decode_date({"$date": value})
