"""A resumed `set --yes` / `confirm` / `undo` whose write landed before a kill -9 (found in review).

bot/runtime/journal.py promises: "LANDED: the write is not sent again; the command gets the outcome it
would have had (changed=True), so it writes its audit row and answers exactly as if it had not
been interrupted". `enable`/`disable` reach the journal in `Edit.apply`; `set` planned on the
stored document (already changed: "already has those values"), `undo` saw a conflict and
`confirm` had lost its preview with the process, so they answered "nothing changed" and the change
had no audit row. They now ask `IntegrationService.resumed` first.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from set_harness import Harness, open_harness

from bot.runtime.journal import JournaledIntegrationService
from bot.state.confirmations import Status


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = await open_harness()
    services = harness.services
    services.integrations = JournaledIntegrationService(services.rest, services.state, harness.clock)
    try:
        yield harness
    finally:
        await harness.close()


async def _twice(h: Harness, monkeypatch: pytest.MonkeyPatch, text: str) -> Any:
    message, invocation = h.message("admin", "ops", text)
    assert await h.run_killed_at_record(monkeypatch, message, invocation) is None
    return await h.run_claimed(message, invocation, resumed=True)


async def test_a_resumed_set_whose_write_landed_is_answered_and_audited(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = h.control.create_incoming_integration("Resumed set", channel="#general", alias="old")
    reply = await _twice(h, monkeypatch, f"!integration set {hook['_id']} alias=new --yes")
    assert h.doc(hook["_id"])["alias"] == "new"  # the write landed
    rows = await h.services.state.history()
    assert reply.outcome == "changed", reply.text
    assert [r.action for r in rows] == ["set"]


async def test_a_resumed_undo_whose_write_landed_is_answered_and_audited(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = h.control.create_incoming_integration("Resumed undo", channel="#general")
    assert (await h.say("admin", "ops", f"!integration disable {hook['_id']}")).outcome == "changed"
    reply = await _twice(h, monkeypatch, "!integration undo")
    assert h.doc(hook["_id"])["enabled"] is True  # the undo's write landed
    assert reply.outcome == "changed", reply.text


async def test_a_resumed_confirm_whose_write_landed_is_answered_and_audited(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = h.control.create_incoming_integration("Resumed confirm", channel="#general", alias="old")
    preview = await h.say("admin", "ops", f"!integration set {hook['_id']} alias=new")
    assert preview.outcome == "preview", preview.text
    reply = await _twice(h, monkeypatch, "!integration yes")
    assert h.doc(hook["_id"])["alias"] == "new"  # the write landed
    assert "nothing was changed" not in reply.text, reply.text


@pytest.mark.parametrize("how", ["confirm CODE", "yes"])
async def test_a_confirmation_taken_over_before_its_write_is_applied_by_the_replica_that_took_it_over(
    h: Harness, how: str
) -> None:
    """Was: a replica stopped (paused past its lease, or killed) after taking the confirmation's
    code and before writing lost the command to another; the other, resuming it, found the change
    "being applied right now" (or, for `yes`, no change waiting) and answered so, and the change the
    person confirmed was never made. The command resumed now applies it."""
    hook = h.control.create_incoming_integration("Taken over confirm", channel="#general", alias="old")
    preview = await h.say("admin", "ops", f"!integration set {hook['_id']} alias=new")
    found = re.search(r"confirm ([A-Z0-9]{4})", preview.text)
    assert found is not None, preview.text
    text = f"!integration confirm {found.group(1)}" if how == "confirm CODE" else "!integration yes"
    message, invocation = h.message("admin", "ops", text)
    now = h.clock()
    assert await h.services.state.claim_message(message.id, message.room_id, now, now)
    # The first replica took the code, then stopped before writing.
    taken = await h.services.pending.take(found.group(1), user_id=message.user_id, room_id=message.room_id, now=now)
    assert taken.status is Status.OK
    reply = await h.run_claimed(message, invocation, resumed=True)  # the one that took it over
    assert reply.outcome == "changed", reply.text
    assert h.doc(hook["_id"])["alias"] == "new"


async def test_a_resumed_yes_applies_the_change_it_took_not_one_previewed_after_it(h: Harness) -> None:
    """A `yes` taken over (its replica killed while applying the change it took) is resumed some
    30 s later by another replica. Meanwhile its author, with no answer yet, previewed another
    change in that room (not confirmed). Was: the resumed `yes` took the caller's newest change,
    and applied the one nobody had confirmed (the one confirmed was left "being applied")."""
    first = h.control.create_incoming_integration("Confirmed change", channel="#general", alias="old")
    other = h.control.create_incoming_integration("Only previewed", channel="#general", alias="kept")
    preview = await h.say("admin", "ops", f"!integration set {first['_id']} alias=confirmed")
    assert preview.outcome == "preview", preview.text
    message, invocation = h.message("admin", "ops", "!integration yes")
    now = h.clock()
    assert await h.services.state.claim_message(message.id, message.room_id, now, now)
    # The first replica took the change, then died before writing it.
    taken = await h.services.pending.take_latest(user_id=message.user_id, room_id=message.room_id, now=now)
    assert taken.status is Status.OK
    # No answer yet: the person previews something else meanwhile, and does not confirm it.
    h.clock.advance(timedelta(seconds=20))
    later = await h.say("admin", "ops", f"!integration set {other['_id']} alias=unconfirmed")
    assert later.outcome == "preview", later.text
    h.clock.advance(timedelta(seconds=20))  # its lease ran out
    reply = await h.run_claimed(message, invocation, resumed=True)  # the replica that took it over
    assert reply.outcome == "changed", reply.text
    assert h.doc(first["_id"])["alias"] == "confirmed"
    assert h.doc(other["_id"])["alias"] == "kept"


async def test_a_resumed_undo_of_a_bulk_disable_killed_after_its_second_member_finishes_the_group(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The undo of a `disable all …`, killed at its second member's audit row (the first reverted
    and audited, the second's revert landed): resumed, it is still the undo of that group (its
    write intents name its members), finishes it once, and answers for all of it."""
    hooks = [h.control.create_incoming_integration(f"grp-{n}", channel="#general") for n in ("a", "b")]
    disabled = await h.say("admin", "ops", '!integration disable all matching "grp-*" --yes')
    assert disabled.outcome == "changed", disabled.text
    message, invocation = h.message("admin", "ops", "!integration undo")
    assert await h.run_killed_at_record(monkeypatch, message, invocation, at=2) is None
    reply = await h.run_claimed(message, invocation, resumed=True)
    assert [h.doc(hook["_id"])["enabled"] for hook in hooks] == [True, True]
    assert reply.outcome == "changed" and "for 2 of 2" in reply.text, reply.text
    undos = [r for r in await h.services.state.history() if r.action == "undo"]
    assert sorted(r.integration_id for r in undos) == sorted(hook["_id"] for hook in hooks)
