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


async def test_an_integration_named_after_anothers_id_can_be_told_apart_in_list(h: Harness) -> None:
    """owen names his incoming webhook after Grafana's id. The admin's `list` shows it as
    `<Grafana's id>` · incoming, without its own id (ids are shown only for shared names and
    look-alikes), and asked about "that hook", the admin types the name shown:
    `disable <Grafana's id>` switches Grafana off (an id is tried first, as buttons need). Nothing
    names owen's hook but its real id, which nothing shows. `list` should show its id, as it does
    for names that are not what they look like."""
    grafana = h.seeded["integrations"]["grafana"]["id"]
    decoy = h.control.create_incoming_integration(grafana, channel="#alerts", created_by="owen")
    listed = await h.say("admin", "alerts", "!integration list")
    assert decoy["_id"] in listed.text, listed.text


async def test_a_homoglyph_name_copied_from_chat_does_not_silently_hit_the_look_alike(h: Harness) -> None:
    """owen (who may manage only his own integrations) names his incoming webhook `Grаfana`, with
    a Cyrillic `а` (U+0430), and asks in chat "please disable Grаfana, it floods #alerts". The
    admin copies the name: `!integration disable Grаfana`. The bot switched off owen's webhook and
    answered "Disabled `Grаfana` (incoming)", which reads exactly like the real Grafana, which
    kept posting. The README promises that "a look-alike copied from chat never silently hits the
    other integration (you get both, with their ids)"; letters of another script that look the
    same (Unicode confusables) are such look-alikes, as invisible characters and full-width
    letters are."""
    real = h.seeded["integrations"]["grafana"]["id"]
    fake = h.control.create_incoming_integration("Gr\u0430fana", channel="#alerts", created_by="owen")
    reply = await h.say("admin", "alerts", "!integration disable Gr\u0430fana because it floods")
    assert h.doc(fake["_id"])["enabled"] is True, reply.text
    assert h.doc(real)["enabled"] is True, reply.text
    assert reply.outcome == "ambiguous", reply.text
    assert real in reply.text and fake["_id"] in reply.text
