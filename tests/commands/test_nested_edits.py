"""bot/locks.py advertises re-entrancy "so code that already edits an integration can call
helpers that take the lock again", but a re-entrant hold answers `untouched_since(mark)` from
releases only: the holder's own write made after `mark` is not counted, so a helper handed a
document resolved before the outer hold writes from it and undoes the holder's own change.
(No caller nests today: a latent trap.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from set_harness import Harness, open_harness


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = await open_harness()
    try:
        yield harness
    finally:
        await harness.close()


async def test_a_nested_edit_does_not_write_from_a_read_older_than_the_holders_own_write(h: Harness) -> None:
    hook = h.control.create_incoming_integration("Nested", channel="#general", alias="old", emoji=":a:")
    service = h.services.integrations
    rights = await h.services.rights.get(h.seeded["users"]["admin"]["userId"])
    found = await service.resolve(hook["_id"], rights=rights)  # read (with its mark) before the hold
    async with service.editing(found) as edit:
        await edit.apply({"alias": "new"}, rights=rights)
        await service.apply_changes(found, {"emoji": ":b:"}, rights=rights)  # a helper, re-entering
    stored = h.doc(hook["_id"])
    assert (stored["alias"], stored["emoji"]) == ("new", ":b:")
