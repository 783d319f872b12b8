"""Fixtures of the command tests: `h`, the in-process harness (tests/commands/set_harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from set_harness import Harness, open_harness


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    """A harness with the defaults (sandbox, bot services, dispatcher), closed after the test."""
    harness = await open_harness()
    try:
        yield harness
    finally:
        await harness.close()
