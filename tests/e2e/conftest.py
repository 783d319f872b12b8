"""Fixtures of the end-to-end tests (the machinery itself is in e2e_support.py).

`workspace` is one seeded sandbox (8.x behaviour) and one bot process for the whole session of a
pytest worker; tests that use it carry `xdist_group(SHARED_GROUP)` so they all land on one worker
and share one bot. Tests that disturb the server or the bot process itself (dropped sockets,
SIGTERM, bad credentials) use `fresh_workspace`, their own sandbox and bot.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import Workspace, running_workspace


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    with running_workspace(tmp_path_factory.mktemp("bot")) as running:
        yield running


@pytest.fixture
def fresh_workspace(tmp_path: Path) -> Iterator[Workspace]:
    with running_workspace(tmp_path) as running:
        yield running
