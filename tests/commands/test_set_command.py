"""`set` and `confirm`/`yes` through the real command layer on the sandbox REST app."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

import pytest
from set_harness import BOT, Harness

from bot.errors import StateUnavailable
from bot.runtime.direct_rooms import DirectRooms
from bot.runtime.intake import Intake
from commands.parser import DEFAULT_PREFIXES
from commands.reply import Reply

SECRET = "n3w-0utgoing-t0ken-xyz"


def ids(h: Harness, label: str) -> str:
    return str(h.seeded["integrations"][label]["id"])


def code_of(reply: Reply) -> str:
    found = re.search(r"confirm ([A-Z0-9]{4})", reply.text)
    assert found is not None, reply.text
    return found.group(1)


def bullets(reply: Reply) -> list[str]:
    return [line[2:] for line in reply.text.splitlines() if line.startswith("• ")]


async def test_a_preview_lists_only_the_changed_fields_and_writes_nothing(h: Harness) -> None:
    gid = ids(h, "guggy-outgoing")
    before = h.doc(gid)
    reply = await h.say("admin", "ops", f'!integration set {gid} alias="Guggy bot" emoji=:ghost: channel=#alerts,#ops')
    assert reply.outcome == "preview"
    assert bullets(reply) == ["alias: `guggy` → `Guggy bot`", "channel: `#general` → `#alerts`, `#ops`"]
    code = code_of(reply)
    assert reply.buttons[0].text == "Apply"
    assert reply.buttons[0].command == f"!integration confirm {code}"
    assert "`!integration yes`" in reply.text
    assert h.writes() == 0
    assert h.doc(gid) == before


async def test_confirm_applies_verifies_and_audits_the_whole_documents(h: Harness) -> None:
    gid = ids(h, "guggy-outgoing")
    before = h.doc(gid)
    preview = await h.say("admin", "ops", f"!integration set {gid} triggerWords +!gif -!guggy")
    applied = await h.say("admin", "ops", f"!integration confirm {code_of(preview)}")
    assert applied.outcome == "changed", applied.text
    assert bullets(applied) == ["triggerWords: `!guggy` → `!gif`"]
    after = h.doc(gid)
    assert after["triggerWords"] == ["!gif"]
    assert h.writes() == 1
    (row,) = await h.services.state.history(limit=1)
    assert row.action == "set"
    assert row.before == before
    assert row.after == after
    assert row.actor_username == "admin"


async def test_a_token_is_never_shown_and_show_says_it_is_set(h: Harness) -> None:
    gid = ids(h, "guggy-outgoing")
    preview = await h.say("admin", "ops", f"!integration set {gid} token={SECRET}")
    assert bullets(preview) == ["token: set → changed (not shown)"]
    applied = await h.say("admin", "ops", "!integration yes")
    assert applied.outcome == "changed"
    assert h.doc(gid)["token"] == SECRET
    shown = await h.say("admin", "ops", f"!integration show {gid}")
    assert "token: set (not shown)" in shown.text
    for reply in (preview, applied, shown):
        assert SECRET not in reply.text
        assert all(SECRET not in b.command for b in reply.buttons)


async def test_with_yes_in_the_command_it_applies_at_once_also_from_a_phone(h: Harness) -> None:
    gid = ids(h, "guggy-incoming")
    first = await h.say("admin", "ops", f"!integration set {gid} emoji=:tada: --yes")
    assert first.outcome == "changed"
    second = await h.say("admin", "ops", f"!integration set {gid} emoji=:ghost: —yes")  # an em-dash
    assert second.outcome == "changed"
    assert h.doc(gid)["emoji"] == ":ghost:"
    assert h.writes() == 2


async def test_in_a_direct_message_a_bare_yes_confirms(h: Harness) -> None:
    gid = ids(h, "guggy-incoming")
    dm = h.dm("admin")
    preview = await h.say("admin", dm, f"set {gid} alias=hello", direct=True)
    assert "(or `yes`)" in preview.text
    applied = await h.say("admin", dm, "yes", direct=True)
    assert applied.outcome == "changed"
    assert h.doc(gid)["alias"] == "hello"


async def test_someone_else_or_another_room_cannot_confirm_and_the_owner_still_can(h: Harness) -> None:
    gid = ids(h, "guggy-incoming")
    code = code_of(await h.say("admin", "ops", f"!integration set {gid} alias=mine"))
    other_user = await h.say("owen", "ops", f"!integration confirm {code}")
    other_room = await h.say("admin", "general", f"!integration confirm {code}")
    for reply in (other_user, other_room):
        assert reply.outcome == "foreign"
        assert "not yours" in reply.text
    assert (await h.say("owen", "ops", "!integration yes")).outcome == "none"
    assert h.writes() == 0
    assert (await h.say("admin", "ops", f"!integration confirm {code}")).outcome == "changed"


async def test_an_expired_confirmation_does_nothing(h: Harness) -> None:
    gid = ids(h, "guggy-incoming")
    before = h.doc(gid)
    code = code_of(await h.say("admin", "ops", f"!integration set {gid} alias=late"))
    h.clock.advance(timedelta(minutes=2))
    reply = await h.say("admin", "ops", f"!integration confirm {code}")
    assert reply.outcome == "expired"
    assert "expired" in reply.text
    assert h.doc(gid) == before
    assert h.writes() == 0


async def test_unknown_codes_and_nothing_pending_are_said_so(h: Harness) -> None:
    assert (await h.say("admin", "ops", "!integration confirm ZZZZ")).outcome == "unknown-code"
    assert (await h.say("admin", "ops", "!integration yes")).outcome == "none"


async def test_a_change_since_the_preview_stops_the_confirmation(h: Harness) -> None:
    gid = ids(h, "guggy-incoming")
    code = code_of(await h.say("admin", "ops", f"!integration set {gid} alias=mine"))
    h.control.update_integration(gid, {"emoji": ":fire:"})
    reply = await h.say("admin", "ops", f"!integration confirm {code}")
    assert reply.outcome == "stale"
    assert "changed by someone since the preview" in reply.text
    assert h.doc(gid)["emoji"] == ":fire:"
    assert h.doc(gid)["alias"] == "guggy"
    assert h.writes() == 0


async def test_nothing_to_change_is_said_and_nothing_is_pending(h: Harness) -> None:
    gid = ids(h, "guggy-incoming")
    reply = await h.say("admin", "ops", f"!integration set {gid} alias=guggy emoji=:ghost:")
    assert reply.outcome == "unchanged"
    assert (await h.say("admin", "ops", "!integration yes")).outcome == "none"


@pytest.mark.parametrize("user", ["alice", "owen"])
async def test_callers_without_rights_are_refused_before_any_preview(h: Harness, user: str) -> None:
    gid = ids(h, "guggy-incoming")
    reply = await h.say(user, "ops", "!integration set incoming Guggy alias=x")
    assert reply.outcome in ("denied", "not-found"), reply.text
    by_id = await h.say(user, "ops", f"!integration set {gid} alias=x")
    assert by_id.outcome in ("denied", "not-found")
    assert await h.services.pending.waiting() == 0
    assert h.writes() == 0


async def test_own_integrations_follow_the_membership_rule_for_new_channels(h: Harness) -> None:
    jid = ids(h, "jenkins-builds")  # owen's own incoming webhook, posting to #ops
    denied = await h.say("owen", "ops", f"!integration set {jid} channel=+#platform-team")
    assert denied.outcome == "denied"
    assert "#\u200bplatform-team" in denied.text or "platform-team" in denied.text
    allowed = await h.say("owen", "ops", f"!integration set {jid} alias=CI --yes")
    assert allowed.outcome == "changed"


async def test_rights_are_checked_again_when_confirming(h: Harness) -> None:
    jid = ids(h, "jenkins-builds")
    code = code_of(await h.say("owen", "ops", f"!integration set {jid} alias=CI"))
    h.control.set_user_roles("owen", ["user"])
    reply = await h.say("owen", "ops", f"!integration confirm {code}")
    assert reply.outcome == "denied"
    assert h.writes() == 0


async def test_rooms_and_users_must_exist_and_a_private_room_the_bot_cannot_open_counts(h: Harness) -> None:
    gid = ids(h, "guggy-incoming")
    missing = await h.say("admin", "ops", f"!integration set {gid} channel=+#no-such-room,+@nobody username=ghost")
    assert missing.outcome == "input"
    assert "channel: there is no room `#no-such-room`" in missing.text
    assert "channel: there is no user `@nobody`" in missing.text
    assert "username: there is no user `ghost`" in missing.text
    h.control.create_room("hidden", room_type="p", members=["admin"], owner="admin")
    found = await h.say("admin", "ops", f"!integration set {gid} channel=+#hidden,+@alice username=Hookbot --yes")
    assert found.outcome == "changed", found.text
    stored = h.doc(gid)
    assert stored["channel"] == ["#general", "#hidden", "@alice"]
    assert stored["username"] == "hookbot"  # the stored spelling of the user's name
    assert h.writes() == 1


async def test_a_refusal_lists_every_problem_and_writes_nothing(h: Harness) -> None:
    gid = ids(h, "guggy-outgoing")
    before = h.doc(gid)
    reply = await h.say("admin", "ops", f"!integration set {gid} retryCount=x event=nope urls=ftp://x.test --yes")
    assert reply.outcome == "input"
    assert [line.split(":")[0] for line in bullets(reply)] == ["retryCount", "event", "urls"]
    assert h.doc(gid) == before
    assert h.writes() == 0


async def test_help_for_set_lists_the_fields(h: Harness) -> None:
    reply = await h.say("admin", "ops", "!integration help set")
    for field in ("channel", "triggerWords", "retryDelay", "token"):
        assert field in reply.text


async def test_undo_is_offered_only_when_the_bot_has_it(h: Harness) -> None:
    gid = ids(h, "guggy-incoming")
    applied = await h.say("admin", "ops", f"!integration set {gid} alias=x --yes")
    has_undo = h.services.registry is not None and h.services.registry.find("undo") is not None
    assert ("undo" in applied.text) == has_undo


async def test_an_event_without_channels_needs_manage_outgoing(h: Harness) -> None:
    did = ids(h, "deploy-announcer")  # owen's own outgoing webhook; owen has only the "own" rights
    reply = await h.say("owen", "ops", f"!integration set {did} event=roomCreated --yes")
    assert reply.outcome == "denied"
    assert "manage-outgoing-integrations" in reply.text
    assert h.writes() == 0
    admin = await h.say("admin", "ops", f"!integration set {did} event=roomCreated --yes")
    assert admin.outcome == "changed", admin.text
    assert h.doc(did)["channel"] == []


@pytest.mark.parametrize(
    "text",
    [
        "!integration set {id} script=class Script { process_incoming_request() { return SECRETCODE; } }",
        "!integration set {id} script ```class Script { SECRETCODE }```",
        "!integration set {id} alias=x ```SECRETCODE```",
    ],
)
async def test_a_script_is_refused_without_quoting_any_of_it(h: Harness, text: str) -> None:
    gid = ids(h, "guggy-incoming")
    reply = await h.say("admin", "ops", text.replace("{id}", gid))
    assert reply.outcome == "input"
    assert "scripts can't be changed from chat" in reply.text
    assert "SECRETCODE" not in reply.text
    assert "Script" not in reply.text.replace("scriptEnabled", "")
    assert h.writes() == 0


async def test_value_and_existence_problems_come_in_one_answer(h: Harness) -> None:
    """Was: bad values were refused first (two problems) and the missing room only after they were
    fixed (a third); now one answer lists all three, in the order they were typed."""
    made = h.control.create_outgoing_integration(
        "Validation probe", channel="#general", urls=["https://example.org/hook"], token="probe-token-1"
    )
    before = h.doc(made["_id"])
    reply = await h.say(
        "admin", "ops", "!integration set outgoing Validation probe channel=#nowhere emoji=ghost retryCount=abc"
    )
    assert reply.outcome == "input", reply.text
    assert reply.text.startswith("⚠️ I changed nothing:")
    fields = [line.split(":")[0] for line in bullets(reply)]
    assert fields == ["channel", "emoji", "retryCount"], reply.text
    assert "there is no room `#nowhere`" in reply.text
    assert h.writes() == 0
    assert h.doc(made["_id"]) == before


async def test_a_value_problem_hides_the_rules_it_would_break_only_for_its_own_field(h: Harness) -> None:
    """A channel entry that is not one leaves the list empty: that is not reported a second time
    as "needs at least one channel", but other fields' problems still are."""
    made = h.control.create_incoming_integration("Validation probe in", channel="#general")
    reply = await h.say("admin", "ops", f"!integration set {made['_id']} channel=nowhere emoji=ghost")
    problems = bullets(reply)
    assert [line.split(":")[0] for line in problems] == ["channel", "emoji"], reply.text
    assert "at least one" not in reply.text


async def test_confirming_an_applied_change_again_says_it_was_applied(h: Harness) -> None:
    """Was: a second `confirm K7Q2` (or a second tap on Apply) answered "I have no change waiting
    with that code", as if it had never been applied; now it says it was."""
    made = h.control.create_incoming_integration("Confirm probe", channel="#general")
    code = code_of(await h.say("admin", "ops", f"!integration set {made['_id']} alias=applied-once"))
    assert (await h.say("admin", "ops", f"!integration confirm {code}")).outcome == "changed"
    h.clock.advance(timedelta(seconds=30))
    again = await h.say("admin", "ops", f"!integration confirm {code.lower()}")
    assert again.outcome == "applied", again.text
    assert again.text.startswith(f"That change (`{code}`) to `Confirm probe` (incoming) was already applied, 30 s ago")
    assert h.writes() == 1
    other = await h.say("owen", "ops", f"!integration confirm {code}")
    assert other.outcome == "foreign", other.text


async def test_a_confirmation_that_wrote_nothing_is_not_called_applied(h: Harness) -> None:
    gid = ids(h, "guggy-incoming")
    code = code_of(await h.say("admin", "ops", f"!integration set {gid} alias=mine"))
    h.control.update_integration(gid, {"emoji": ":fire:"})
    assert (await h.say("admin", "ops", f"!integration confirm {code}")).outcome == "stale"
    assert (await h.say("admin", "ops", f"!integration confirm {code}")).outcome == "unknown-code"


async def test_a_double_tap_on_apply_is_not_answered_as_an_unknown_code(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two taps on Apply arrive together (a caller's commands run two at a time): while the first
    one is writing, the second was answered "I have no change waiting with that code … Run `set`
    again", as if the change were lost, though it was being applied. It says so instead."""
    made = h.control.create_incoming_integration("Double tap", channel="#general")
    code = code_of(await h.say("admin", "ops", f"!integration set {made['_id']} alias=tapped-twice"))
    rest, update = h.services.rest, h.services.rest.integrations_update

    async def over_the_network(body: Any, *, retry: bool = True) -> dict[str, Any]:
        await asyncio.sleep(0.05)  # a real server takes a moment: the second tap arrives meanwhile
        return await update(body, retry=retry)

    monkeypatch.setattr(rest, "integrations_update", over_the_network)
    first, second = await asyncio.gather(
        h.say("admin", "ops", f"!integration confirm {code}"), h.say("admin", "ops", f"!integration confirm {code}")
    )
    assert sorted([first.outcome, second.outcome]) == ["applying", "changed"], (first.text, second.text)
    assert "is being applied right now" in second.text + first.text
    assert h.writes() == 1


async def test_an_address_whose_port_is_no_number_is_refused_clearly(h: Harness) -> None:
    """Was: `set … avatar=http://h:abc/a.png` answered "💥 Something went wrong on my side"
    (cutting the address to its host read its port, which raised); then it was previewed as
    `***`, ready to be stored. It is no address: refused, and nothing is previewed."""
    reply = await h.say("owen", "ops", '!integration set "Jenkins builds" avatar=http://h:abc/a.png')
    assert reply.outcome != "preview", reply.text
    assert "an avatar is an http(s) image address" in reply.text
    assert h.writes() == 0


async def test_a_confirmation_whose_change_is_written_says_so_when_the_state_database_fails_after_it(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change is written and audited; the state database then fails to mark it applied. The
    answer is still "changed", not "nothing was changed"."""
    made = h.control.create_incoming_integration("Marked late", channel="#general")
    code = code_of(await h.say("admin", "ops", f"!integration set {made['_id']} alias=marked"))

    async def down(*args: Any, **kwargs: Any) -> None:
        raise StateUnavailable("test-db", "connection refused")

    monkeypatch.setattr(h.services.state.confirmations, "applied", down)
    monkeypatch.setattr(h.services.state.confirmations, "release", down)
    reply = await h.say("admin", "ops", f"!integration confirm {code}")
    assert reply.outcome == "changed", reply.text
    assert h.doc(made["_id"])["alias"] == "marked"


async def test_an_owner_cannot_make_the_bot_ignore_the_admin(h: Harness) -> None:
    """owen (own integrations only) makes his own webhook post as the admin. Rocket.Chat (7.x, 8.x)
    gives the post-as user the `bot` role on that update (contract §2.4.3 step 8): the role must
    not make the bot ignore the admin's commands from then on (one user silencing another's)."""
    reply = await h.say("owen", "ops", '!integration set "Jenkins builds" username=admin --yes')
    admin = h.seeded["users"]["admin"]["userId"]
    rights = await h.services.rights.get(admin, fresh=True)
    assert "bot" in rights.roles, reply.text  # what Rocket.Chat did to the admin's account
    intake = Intake(
        bot_user_id=h.services.identity.user_id,
        bot_username=BOT,
        prefixes=DEFAULT_PREFIXES,
        direct_rooms=DirectRooms(h.services.rest),
    )
    assert intake.ignored_author(rights) is None
