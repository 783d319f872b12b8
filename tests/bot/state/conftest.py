"""The state tests' way to open stores on either backend, as processes do."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.state.store import StateStore

# Opens one more StateStore on the test's state (another process, or another replica).
Opener = Callable[..., Awaitable[StateStore]]


@pytest.fixture(params=["sqlite", "postgresql"])
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """`await open_store(owner=…)`: one more process's store on the same state, on a SQLite file
    (opened one after the other, as its lock demands) or a real PostgreSQL (at the same time, as
    replicas are); every store is closed afterwards."""
    opened: list[StateStore] = []
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")

        async def opener(**options: Any) -> StateStore:
            opened.append(await StateStore.connect(url, **options))
            return opened[-1]
    else:
        path = tmp_path / "state.sqlite3"

        async def opener(**options: Any) -> StateStore:
            opened.append(await StateStore.open(path, **options))
            return opened[-1]

    try:
        yield opener
    finally:
        for state in opened:
            await state.close()
