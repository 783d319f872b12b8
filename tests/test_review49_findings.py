"""Findings of an adversarial review of the changes merged on 2026-12-07 (review49) that are not
fixed on this branch: each test asserts the behaviour a user should see, and fails on the code it
was written against. (The findings fixed here have their tests next to the code they cover.)"""

from __future__ import annotations

import pytest

from commands.args import time_limit


@pytest.mark.parametrize(
    ("reason", "limit"),
    [
        # Missed: a plain disable with these reasons leaves the integration off for good.
        ("until 17h", "until 17h"),  # the European way of writing 5pm (`17h30` is recognised)
        ("until next week", "until next week"),
        ("until 5 p.m.", "until 5 p.m"),  # recognised, but quoted back as "until 5"
    ],
)
def test_more_time_limits_are_recognised(reason: str, limit: str) -> None:
    assert time_limit(reason) == limit


@pytest.mark.parametrize("reason", ["until 5 people complain", "until 2 teams agree"])
def test_a_number_of_things_after_until_is_a_reason(reason: str) -> None:
    """`disable Grafana until 5 people complain` is refused as "until 5" (a time of day)."""
    assert time_limit(reason) is None
