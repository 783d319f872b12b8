"""README "Names that only look alike count as the same name: an invisible character inside
or full-width letters make no difference, so a look-alike copied from chat never silently hits
the other integration (you get both, with their ids)". True for invisible characters; not for
full-width letters: the exact-case rule compares `normalize` forms (NFC, not NFKC), so a copied
full-width name is "spelled exactly" and wins silently; and the server's name search never
returns the ASCII twin unless the message also holds an invisible character (`thorough`)."""

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


async def test_a_copied_full_width_look_alike_changes_nothing_and_shows_both(h: Harness) -> None:
    real = h.control.create_incoming_integration("Pager", channel="#general")
    fake = h.control.create_incoming_integration("Ｐａｇｅｒ", channel="#general", created_by="owen")
    reply = await h.say("admin", "ops", '!integration disable "Ｐａｇｅｒ"')
    assert h.doc(fake["_id"])["enabled"] is True, reply.text
    assert real["_id"] in reply.text and fake["_id"] in reply.text, reply.text
