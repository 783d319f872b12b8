"""bot/integrations/locks.py is re-entrant "so code that already edits an integration can call helpers that
take the lock again". A re-entrant hold used to answer `untouched_since(mark)` from releases only:
the holder's own write made after `mark` did not count, so a helper handed a document resolved
before the outer hold wrote from it and undid the holder's own change (found in review; no caller
nests today). A nested hold now never trusts an earlier read."""

from __future__ import annotations

from set_harness import Harness


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
