"""README: "Names that only look alike count as the same name: an invisible character inside
or full-width letters make no difference, so a look-alike copied from chat never silently hits
the other integration (you get both, with their ids)". For full-width letters that failed (found
in review): the exact-case rule compared NFC forms, so a copied full-width name was "spelled
exactly" and won silently, and the server's name search never returned its ASCII twin."""

from __future__ import annotations

from set_harness import Harness


async def test_a_copied_full_width_look_alike_changes_nothing_and_shows_both(h: Harness) -> None:
    real = h.control.create_incoming_integration("Pager", channel="#general")
    fake = h.control.create_incoming_integration("Ｐａｇｅｒ", channel="#general", created_by="owen")
    reply = await h.say("admin", "ops", '!integration disable "Ｐａｇｅｒ"')
    assert h.doc(fake["_id"])["enabled"] is True, reply.text
    assert real["_id"] in reply.text and fake["_id"] in reply.text, reply.text
