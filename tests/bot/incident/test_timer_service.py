"""TimerService against the sandbox REST app: the careful re-enable, its notices and audit rows,
crash recovery of half-set-up timers, and timers following the bot's own changes.

The sandbox is served through `httpx.ASGITransport` (no sockets); the state file is a real SQLite
file; the clock is a `ManualClock` (only audit times and due times depend on it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import stamina

from bot.clock import ManualClock
from bot.incident.timers import TimerService
from bot.integrations.authz import RightsCache
from bot.integrations.service import IntegrationService
from bot.rocketchat.models import UpdateOutcome
from bot.rocketchat.rest import RestClient
from bot.state.store import AuditRecord, StateStore
from bot.state.timer_states import TimedDisable, TimerState
from bot.state.timer_store import TimerDraft
from sandbox.config import SandboxConfig
from sandbox.control import incoming_integration_document
from sandbox.rest import create_rest_app
from sandbox.store import Store

START = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


@dataclass
class Rig:
    store: Store
    app: Any
    rest: RestClient
    state: StateStore
    timers: TimerService
    clock: ManualClock
    bot_id: str
    room_id: str
    integrations: IntegrationService  # the timers' own: its locks are theirs

    def client(self, username: str) -> RestClient:
        user = self.store.find_user(username)
        assert user is not None
        token = self.store.create_login_token(user._id)
        return RestClient(
            "http://sandbox.test", user_id=user._id, auth_token=token, transport=httpx.ASGITransport(app=self.app)
        )

    def doc(self, integration_id: str) -> dict[str, Any]:
        found = self.store.get_integration(integration_id)
        assert found is not None
        return found

    def notices(self) -> list[dict[str, Any]]:
        return [m for m in self.store.room_messages(self.room_id) if m["u"]["_id"] == self.bot_id]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    store = Store()
    app = create_rest_app(store, SandboxConfig())
    bot = store.create_user("integrations-bot", password="pw-bot", roles=["bot", "admin"])
    store.create_user("boss", password="pw-boss", roles=["admin"])
    store.create_user("rocket.cat", password="pw-cat", roles=["bot"])
    room = store.create_room("ops", "c", members=["integrations-bot", "boss"])
    rest = RestClient(
        "http://sandbox.test",
        user_id=bot._id,
        auth_token=store.create_login_token(bot._id),
        transport=httpx.ASGITransport(app=app),
    )
    state = await StateStore.open(tmp_path / "state.sqlite3")
    clock = ManualClock(START)
    integrations = IntegrationService(rest)
    timers = TimerService(
        store=state.timers,
        state=state,
        rest=rest,
        integrations=integrations,
        rights=RightsCache(rest, ttl=0),
        bot_user_id=bot._id,
        bot_username="integrations-bot",
        clock=clock,
    )
    with stamina.set_testing(True, attempts=3):
        yield Rig(store, app, rest, state, timers, clock, bot._id, room["_id"], integrations)
    await rest.aclose()
    await state.close()


def new_hook(rig: Rig, **fields: Any) -> str:
    doc = incoming_integration_document(
        rig.store, "Pager", channel="#ops", alias="pager", emoji=":bell:", created_by="boss", **fields
    )
    return str(rig.store.insert_integration(doc)["_id"])


async def as_user(rig: Rig, username: str, integration_id: str, changes: dict[str, Any]) -> UpdateOutcome:
    async with rig.client(username) as client:
        rights = await RightsCache(client, ttl=0).get(client.user_id or "")
        return await IntegrationService(client).apply_changes(integration_id, changes, rights=rights)


async def timed_disable(rig: Rig, integration_id: str, minutes: int = 30) -> TimedDisable:
    """What `disable <id> for 30m` does, in its order: schedule, disable, confirm."""
    scheduled = await rig.timers.schedule(
        TimerDraft(
            integration_id=integration_id,
            integration_name="Pager",
            integration_type="webhook-incoming",
            created_at=rig.clock.now(),
            due_at=rig.clock.now() + timedelta(minutes=minutes),
            actor_id="boss-id",
            actor_username="boss",
            reason="flapping",
            room_id=rig.room_id,
            message_id="command-1",
        )
    )
    assert scheduled is not None and scheduled.state is TimerState.SCHEDULED
    outcome = await as_user(rig, "boss", integration_id, {"enabled": False})
    confirmed = await rig.timers.confirm(scheduled, outcome.after.document, audit_id=None)
    assert confirmed is not None and confirmed.state is TimerState.ACTIVE
    return confirmed


async def audit_actions(rig: Rig) -> list[str]:
    return [r.action for r in await rig.state.history()]


async def test_an_untouched_integration_is_switched_back_on_losslessly(rig: Rig) -> None:
    hook = new_hook(rig)
    original = rig.doc(hook)
    timer = await timed_disable(rig, hook)
    rig.clock.advance(timedelta(minutes=30))

    expiry = await rig.timers.expire(timer)

    assert expiry is not None and expiry.kind == "re-enabled" and expiry.timer.state is TimerState.EXPIRED
    back = rig.doc(hook)
    assert back["enabled"] is True
    for field in ("alias", "emoji", "channel", "token", "username", "scriptEngine", "_createdBy"):
        assert back.get(field) == original.get(field)
    (notice,) = rig.notices()
    assert "is back on" in notice["msg"] and "30 min disable by boss" in notice["msg"]
    assert notice["_id"] == rig.state.message_ids.timer_notice(timer.id, "re-enabled")[0]
    (row,) = await rig.state.history()
    assert row.action == "re-enable" and row.actor_id == rig.bot_id and row.after is not None
    assert row.after["enabled"] is True and row.before is not None and row.before["enabled"] is False
    assert await rig.timers.expire(timer) is None  # ended: a second call does nothing


async def test_a_manual_edit_after_the_disable_is_left_alone_and_reported(rig: Rig) -> None:
    hook = new_hook(rig)
    timer = await timed_disable(rig, hook)
    await as_user(rig, "boss", hook, {"alias": "by hand"})
    touched = rig.doc(hook)

    expiry = await rig.timers.expire(timer)

    assert expiry is not None and expiry.kind == "overridden" and expiry.timer.state is TimerState.OVERRIDDEN
    assert rig.doc(hook) == touched  # not a byte written
    assert "alias" in expiry.notice and "by boss" in expiry.notice and "left it as it is" in expiry.notice
    assert await audit_actions(rig) == ["re-enable-skipped"]
    assert expiry.timer.end_note is not None and "alias" in expiry.timer.end_note


async def test_a_save_without_visible_change_counts_as_someone_elses(rig: Rig) -> None:
    hook = new_hook(rig)
    timer = await timed_disable(rig, hook)
    rig.store.update_integration(hook, {"_updatedAt": datetime.now(UTC) + timedelta(seconds=5)})

    expiry = await rig.timers.expire(timer)

    assert expiry is not None and expiry.kind == "overridden" and "saved again" in expiry.notice
    assert rig.doc(hook)["enabled"] is False


async def test_a_deleted_integration_ends_the_timer_as_overridden(rig: Rig) -> None:
    hook = new_hook(rig)
    timer = await timed_disable(rig, hook)
    rig.store.delete_integration(hook)
    expiry = await rig.timers.expire(timer)
    assert expiry is not None and expiry.kind == "overridden" and "deleted" in expiry.notice


async def test_the_bots_own_reenable_that_landed_before_a_crash_is_not_repeated(rig: Rig) -> None:
    hook = new_hook(rig)
    timer = await timed_disable(rig, hook)
    # The bot wrote `enabled: true` and died before recording it.
    rights = await RightsCache(rig.rest, ttl=0).get(rig.bot_id)
    await IntegrationService(rig.rest).apply_changes(hook, {"enabled": True}, rights=rights)
    landed = rig.doc(hook)

    expiry = await rig.timers.expire(timer)

    assert expiry is not None and expiry.kind == "re-enabled"
    assert rig.doc(hook) == landed  # no second write


async def test_a_reenable_rocket_chat_refuses_for_good_fails_loudly(rig: Rig) -> None:
    hook = new_hook(rig)
    timer = await timed_disable(rig, hook)
    rig.store.set_permission_roles("manage-incoming-integrations", [])  # nobody may, the bot included
    rig.store.set_permission_roles("manage-own-incoming-integrations", [])

    expiry = await rig.timers.expire(timer)

    assert expiry is not None and expiry.kind == "failed" and expiry.timer.state is TimerState.FAILED
    assert "could not turn" in expiry.notice and "not-authorized" in expiry.notice
    assert rig.doc(hook)["enabled"] is False
    assert await audit_actions(rig) == ["re-enable-failed"]


async def test_changes_through_the_bot_are_followed_not_mistaken_for_someone_elses(rig: Rig) -> None:
    hook = new_hook(rig)
    timer = await timed_disable(rig, hook)
    edited = await as_user(rig, "boss", hook, {"emoji": ":zzz:"})  # e.g. `set` while snoozed
    await rig.timers.follow_change(hook, edited.after.document, "set by boss")
    rebased = await rig.timers.store.get(timer.id)
    assert rebased is not None and rebased.state is TimerState.ACTIVE and rebased.revision > timer.revision

    expiry = await rig.timers.expire(rebased)
    assert expiry is not None and expiry.kind == "re-enabled"
    assert rig.doc(hook)["emoji"] == ":zzz:" and rig.doc(hook)["enabled"] is True


async def test_switching_it_on_through_the_bot_cancels_the_timer(rig: Rig) -> None:
    hook = new_hook(rig)
    timer = await timed_disable(rig, hook)
    enabled = await as_user(rig, "boss", hook, {"enabled": True})
    await rig.timers.follow_change(hook, enabled.after.document, "ended early: enable by boss")
    ended = await rig.timers.store.get(timer.id)
    assert ended is not None and ended.state is TimerState.CANCELLED and ended.end_note == "ended early: enable by boss"
    assert await rig.timers.expire(timer) is None
    assert rig.notices() == []


async def test_an_enable_recorded_after_its_answer_leaves_a_timer_set_after_its_write(rig: Rig) -> None:
    """Seen under its lock, there was no timer; by the time its book-keeping runs (after the answer,
    the lock free), another command (through another replica) disabled it for a while: that
    timer is not this enable's to end."""
    hook = new_hook(rig)
    enabled = await as_user(rig, "boss", hook, {"enabled": True})
    seen = await rig.timers.pending_for(hook)
    later = await timed_disable(rig, hook)
    await rig.timers.follow_change(hook, enabled.after.document, "ended early: enable by boss", seen=seen)
    kept = await rig.timers.store.get(later.id)
    assert kept is not None and kept.state is TimerState.ACTIVE and kept.revision == later.revision


async def test_an_ending_recorded_after_its_answer_leaves_the_timer_it_saw_if_it_moved_on_since(rig: Rig) -> None:
    """The timer pending when the enable was written, moved on since: every move holds the lock the
    enable held, so it was made after the enable, by a command that saw it on (e.g. a `disable … for`
    through another replica took the row over, off again with an end of its own): not the enable's
    to end. (Was: followed as it is now, and ended: off for good, its new end never came.)"""
    hook = new_hook(rig)
    timer = await timed_disable(rig, hook)
    enabled = await as_user(rig, "boss", hook, {"enabled": True})
    off_again = await as_user(rig, "boss", hook, {"enabled": False})
    await rig.timers.follow_change(hook, off_again.after.document, "ended early: disable by boss")  # re-based
    rebased = await rig.timers.store.get(timer.id)
    assert rebased is not None
    taken_over = await rig.timers.extend(rebased, timer.due_at + timedelta(hours=1))
    assert taken_over is not None
    await rig.timers.follow_change(hook, enabled.after.document, "ended early: enable by boss", seen=timer)
    kept = await rig.timers.store.get(timer.id)
    assert kept is not None and kept.state is TimerState.ACTIVE and kept.revision == taken_over.revision


async def test_a_re_base_recorded_after_its_answer_follows_the_timer_it_saw_extended_since(rig: Rig) -> None:
    """Still off after the change: a timer only extended since (its reference still the one seen)
    takes this change's newer document; one re-based since on a newer change is left with that one."""
    hook = new_hook(rig)
    timer = await timed_disable(rig, hook)
    edited = await as_user(rig, "boss", hook, {"emoji": ":zzz:"})
    extended = await rig.timers.extend(timer, timer.due_at + timedelta(hours=1))
    assert extended is not None
    await rig.timers.follow_change(hook, edited.after.document, "set by boss", seen=timer)
    rebased = await rig.timers.store.get(timer.id)
    assert rebased is not None and rebased.state is TimerState.ACTIVE
    assert rebased.disabled_document == edited.after.document and rebased.due_at == extended.due_at

    newer = await as_user(rig, "boss", hook, {"emoji": ":sleeping:"})
    await rig.timers.follow_change(hook, newer.after.document, "set by boss")  # under its lock
    await rig.timers.follow_change(hook, edited.after.document, "set by boss", seen=rebased)
    kept = await rig.timers.store.get(timer.id)
    assert kept is not None and kept.disabled_document == newer.after.document
    expiry = await rig.timers.expire(kept)
    assert expiry is not None and expiry.kind == "re-enabled"


async def test_recover_settles_half_set_up_timers_from_what_is_stored(rig: Rig) -> None:
    landed, not_landed, running = new_hook(rig), new_hook(rig), new_hook(rig)

    async def scheduled(integration_id: str, message_id: str) -> TimedDisable:
        found = await rig.timers.schedule(
            TimerDraft(
                integration_id, "Pager", "webhook-incoming", rig.clock.now(), rig.clock.now() + timedelta(hours=1),
                "boss-id", "boss", message_id=message_id,
            )
        )  # fmt: skip
        assert found is not None
        return found

    first = await scheduled(landed, "m-landed")
    await as_user(rig, "boss", landed, {"enabled": False})  # the disable landed, then the crash
    second = await scheduled(not_landed, "m-not-landed")  # the crash came before the write
    third = await scheduled(running, "m-running")  # its command is still running
    await rig.state.claim_message("m-running", rig.room_id, START, START)
    for finished in ("m-landed", "m-not-landed"):
        await rig.state.claim_message(finished, rig.room_id, START, START)
        await rig.state.finish_message(finished, "crashed")

    assert await rig.timers.recover() == 1

    states = {t.id: (await rig.timers.store.get(t.id)) for t in (first, second, third)}
    assert states[first.id] is not None and states[first.id].state is TimerState.ACTIVE  # type: ignore[union-attr]
    assert states[second.id] is not None and states[second.id].state is TimerState.CANCELLED  # type: ignore[union-attr]
    assert states[third.id] is not None and states[third.id].state is TimerState.SCHEDULED  # type: ignore[union-attr]

    rig.clock.advance(timedelta(minutes=11))  # long past any command: an orphan after all
    assert await rig.timers.recover() == 0
    orphan = await rig.timers.store.get(third.id)
    assert orphan is not None and orphan.state is TimerState.CANCELLED


async def test_recover_waits_for_a_change_in_progress_and_settles_on_what_it_wrote(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An `enable` holding the integration's lock while a restart settles a timer its crashed
    command left `scheduled`: the timer is judged on the integration as the enable leaves it (on:
    aborted), never confirmed from a read made just before the enable landed, which would leave a
    running timer on an integration that is on (and a "back on" notice when it falls due)."""
    hook = new_hook(rig)
    orphan = await rig.timers.schedule(
        TimerDraft(
            hook, "Pager", "webhook-incoming", rig.clock.now(), rig.clock.now() + timedelta(hours=1),
            "boss-id", "boss", message_id="m-crashed",
        )
    )  # fmt: skip
    assert orphan is not None
    rights = await RightsCache(rig.rest, ttl=0).get(rig.bot_id)
    await rig.integrations.set_enabled(hook, False, rights=rights)  # its write landed, then the crash
    await rig.state.claim_message("m-crashed", rig.room_id, START, START)
    await rig.state.finish_message("m-crashed", "crashed")

    editing = rig.integrations.editing
    asked = asyncio.Event()

    def asking(*args: Any, **kwargs: Any) -> Any:
        asked.set()
        return editing(*args, **kwargs)

    async with editing(rig.doc(hook)) as edit:  # someone's enable, under the lock
        monkeypatch.setattr(rig.integrations, "editing", asking)
        recovering = asyncio.create_task(rig.timers.recover())
        # Until the recovery asks for the lock, or is over without it.
        await asyncio.wait([asyncio.ensure_future(asked.wait()), recovering], return_when=asyncio.FIRST_COMPLETED)
        await edit.apply({"enabled": True}, rights=rights)
    assert await recovering == 0

    settled = await rig.timers.store.get(orphan.id)
    assert settled is not None and settled.state is TimerState.CANCELLED
    assert rig.doc(hook)["enabled"] is True


async def test_audit_rows_of_the_timer_are_visible_to_history_with_documents(rig: Rig) -> None:
    hook = new_hook(rig)
    timer = await timed_disable(rig, hook)
    await rig.timers.expire(timer)
    rows: list[AuditRecord] = await rig.state.history()
    assert rows[0].integration_id == hook and rows[0].room_id == rig.room_id
    assert rows[0].reason == "timed disable by boss ended"


async def test_a_timer_extended_while_its_re_enable_waited_for_the_lock_is_left_for_later(rig: Rig) -> None:
    hook = new_hook(rig)
    due = await timed_disable(rig, hook)  # what the scheduler holds when it is due
    extended = await rig.timers.extend(due, due.due_at + timedelta(hours=1))  # `extend` got the lock first
    assert extended is not None
    rig.clock.advance(timedelta(minutes=30))

    assert await rig.timers.expire(due) is None
    assert rig.doc(hook)["enabled"] is False and rig.notices() == []
    fresh = await rig.timers.pending_for(hook)
    assert fresh is not None and fresh.state is TimerState.ACTIVE and fresh.due_at == extended.due_at


async def test_the_left_alone_notice_writes_changes_as_set_does(rig: Rig) -> None:
    """Was: the notice wrote values as the audit's display strings (`@user` raw, quotes lost, an
    emptied alias as ``), unlike `set` and `undo` (`(none)`, each value exact in a code span)."""
    hook = new_hook(rig)
    timer = await timed_disable(rig, hook)
    await as_user(rig, "boss", hook, {"alias": "", "emoji": ":fire:", "channel": ["#ops", "@boss"]})

    expiry = await rig.timers.expire(timer)

    assert expiry is not None and expiry.kind == "overridden"
    lines = expiry.notice.splitlines()
    assert "• alias: `pager` → (none)" in lines, expiry.notice
    assert "• emoji: `:bell:` → `:fire:`" in lines, expiry.notice
    channel = next(line for line in lines if line.startswith("• channel:"))
    assert "(a room not shown)" in channel and "boss" in channel and "#ops" not in channel, channel
