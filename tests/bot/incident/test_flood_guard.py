"""The flood guard's handling of a flood (bot/incident/flood.py `FloodGuard.handle`) against the
sandbox REST app: who gets a notice, who does not, and the disable it makes itself (a normal timed
disable by the bot, re-enabled when due), on the timer service's rig (`rig`: tests/bot/incident/conftest.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from bot.config import Settings
from bot.errors import StateUnavailable
from bot.incident import flood
from bot.incident.flood import Flood, FloodGuard
from bot.incident.noise import WebhookPost
from bot.incident.scheduler import Scheduler
from bot.integrations.room_names import RoomDirectory
from bot.state.store import AuditRecord
from bot.state.timer_states import TimedDisable, TimerEvent, TimerState
from tests.bot.incident.test_timer_service import Rig, new_hook

SERVER_MANAGED = ("_updatedAt", "_updatedBy")


def guard(rig: Rig, **settings: Any) -> FloodGuard:
    config = Settings(
        _env_file=None,  # type: ignore[call-arg]
        rocketchat_url="http://sandbox.test",
        rocketchat_user_id="bot",
        rocketchat_auth_token="token",
        **settings,
    )
    return FloodGuard(
        settings=config,
        rest=rig.rest,
        store=rig.state.floods,
        timers=rig.timers,
        rooms=RoomDirectory(rig.rest),
        ids=lambda: rig.state.message_ids,
        clock=rig.clock,
    )


def flood_of(rig: Rig, hook: str, *, author: str | None = None) -> Flood:
    poster = author if author is not None else str(rig.doc(hook)["userId"])
    return Flood(hook, rig.room_id, poster, 20, rig.clock.now())


def stable(document: dict[str, Any]) -> dict[str, Any]:
    """Without what every save rewrites (an 8.x server also writes `skipTranspile: false`)."""
    return {k: v for k, v in document.items() if k not in SERVER_MANAGED and (k, v) != ("skipTranspile", False)}


async def test_a_flood_gets_one_notice_naming_the_webhook_as_the_room_sees_it(rig: Rig) -> None:
    hook = new_hook(rig)
    flood_guard = guard(rig)
    assert await flood_guard.handle(flood_of(rig, hook)) == "noticed"
    [notice] = rig.notices()
    assert notice["msg"].startswith("🌊 `pager` (a webhook) posted 20 messages here in the last minute")
    assert "Pager" not in notice["msg"] and hook not in notice["msg"]
    actions = {a["text"]: a["msg"] for a in notice["attachments"][0]["actions"]}
    assert actions == {
        "Disable for 1 h": f"!integration disable {hook} for 1h because flood",
        "Quiet for today": f"!integration quiet {hook}",
    }
    # Another replica (or this one, again) with the same flood: the store says it was told.
    assert await guard(rig).handle(flood_of(rig, hook)) == "quiet"
    assert len(rig.notices()) == 1
    assert rig.doc(hook)["enabled"] is True


async def test_a_message_not_posted_as_the_integration_is_not_its_flood(rig: Rig) -> None:
    hook = new_hook(rig)
    # A bot account can put any `bot.i` on its messages; it still posts as itself.
    assert await guard(rig).handle(flood_of(rig, hook, author=rig.bot_id)) == "not posted by it"
    assert await guard(rig).handle(flood_of(rig, "no-such-integration", author="x")) == "not an integration"
    assert rig.notices() == []


async def test_an_ignored_room_by_name_or_id_gets_nothing(rig: Rig) -> None:
    hook = new_hook(rig)
    assert await guard(rig, bot_flood_ignore_rooms="#ops").handle(flood_of(rig, hook)) == "ignored room"
    assert await guard(rig, bot_flood_ignore_rooms=rig.room_id).handle(flood_of(rig, hook)) == "ignored room"
    assert rig.notices() == []
    assert await guard(rig, bot_flood_ignore_rooms="elsewhere").handle(flood_of(rig, hook)) == "noticed"


async def test_the_disable_action_is_a_timed_disable_by_the_bot_turned_back_on_when_due(rig: Rig) -> None:
    hook = new_hook(rig)
    original = rig.doc(hook)
    assert await guard(rig, bot_flood_action="disable").handle(flood_of(rig, hook)) == "disabled"
    [notice] = rig.notices()
    assert "so I disabled it until" in notice["msg"] and "in 1 h (flood guard)" in notice["msg"], notice["msg"]
    assert [a["text"] for a in notice["attachments"][0]["actions"]] == ["Re-enable now"]
    off = rig.doc(hook)
    assert off["enabled"] is False and stable({**off, "enabled": True}) == stable(original)
    [timer] = await rig.timers.active()
    assert (timer.actor_username, timer.reason, timer.state) == ("integrations-bot", "flood guard", TimerState.ACTIVE)
    assert timer.due_at == rig.clock.now() + timedelta(hours=1)
    [record] = await rig.state.history()
    assert (record.action, record.actor_id, record.reason) == ("disable", rig.bot_id, "flood guard")

    rig.clock.advance(timedelta(hours=1, seconds=1))
    expiry = await rig.timers.expire(timer)
    assert expiry is not None and expiry.kind == "re-enabled"
    assert expiry.notice.startswith("🟢 `pager` (a webhook) is back on") and "Pager" not in expiry.notice
    assert stable(rig.doc(hook)) == stable(original)


async def test_no_second_disable_while_one_is_pending(rig: Rig) -> None:
    hook = new_hook(rig)
    assert await guard(rig, bot_flood_action="disable").handle(flood_of(rig, hook)) == "disabled"
    elsewhere = rig.store.create_room("alerts", "c", members=["integrations-bot"])
    second = Flood(hook, elsewhere["_id"], str(rig.doc(hook)["userId"]), 20, rig.clock.now())
    assert await guard(rig, bot_flood_action="disable").handle(second) == "noticed"  # told, not disabled again
    assert len(await rig.timers.active()) == 1 and len(await rig.state.history()) == 1


async def outcomes(flood_guard: FloodGuard) -> list[str]:
    """What the floods `observe` handed on came to (each handled in a task of its own)."""
    return list(await asyncio.gather(*flood_guard._tasks))


async def test_forged_messages_can_neither_get_a_webhook_disabled_nor_hide_its_flood(rig: Rig) -> None:
    """Was: anyone could put the webhook's id in `bot.i` on their own messages (DDP sendMessage):
    19 forged ones and the webhook's next genuine message made a flood that passed the author
    check, so BOT_FLOOD_ACTION=disable switched it off; and 20 forged ones muted its count, so
    a real storm right after got no notice for the quiet period."""
    hook = new_hook(rig)
    poster = str(rig.doc(hook)["userId"])
    flood_guard = guard(rig, bot_flood_action="disable")
    sent = iter(range(10_000))

    def send(author: str, count: int) -> None:
        for _ in range(count):
            flood_guard.observe(WebhookPost(f"m{next(sent)}", rig.room_id, hook, rig.clock.now(), author), author)

    send(rig.bot_id, 19)
    send(poster, 1)
    assert await outcomes(flood_guard) == []
    send(rig.bot_id, 1)  # the forger's 20th: a flood of its own, rejected
    assert await outcomes(flood_guard) == ["not posted by it"]
    send(rig.bot_id, 100)  # the webhook's user is known now: not even counted
    assert await outcomes(flood_guard) == []
    assert rig.doc(hook)["enabled"] is True and rig.notices() == []
    send(poster, 19)  # its own 20th message in the window
    assert await outcomes(flood_guard) == ["disabled"]
    assert rig.doc(hook)["enabled"] is False and len(rig.notices()) == 1


async def test_a_flood_dropped_while_too_many_are_in_hand_is_counted_again(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: a flood dropped because MAX_HANDLING were in hand stayed muted for the quiet period,
    so forged floods keeping the guard busy could hide a real one."""
    hook = new_hook(rig)
    poster = str(rig.doc(hook)["userId"])
    flood_guard = guard(rig)
    posts = (WebhookPost(f"m{n}", rig.room_id, hook, rig.clock.now(), poster) for n in range(1000))
    monkeypatch.setattr(flood, "MAX_HANDLING", 0)
    for _ in range(20):
        flood_guard.observe(next(posts), poster)
    assert await outcomes(flood_guard) == []  # dropped
    monkeypatch.setattr(flood, "MAX_HANDLING", 64)
    for _ in range(20):
        flood_guard.observe(next(posts), poster)
    assert await outcomes(flood_guard) == ["noticed"]


@pytest.mark.parametrize("failing", ["its audit row", "its timer's confirmation"])
async def test_a_disable_written_before_the_state_database_failed_is_told_as_made(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """Was: the state database failing after the disable was written (its audit row, or its
    timer's confirmation) made the notice say nothing of it and offer "Disable for 1 h" for a
    webhook already off, which came back on an hour later (its timer confirmed by `recover`)
    without anybody having been told it was off."""
    hook = new_hook(rig)
    if failing == "its audit row":
        record = rig.state.record

        async def fail_record(entry: AuditRecord) -> int:
            if entry.action == "disable":
                raise StateUnavailable("test database", "the database went away")
            return await record(entry)

        monkeypatch.setattr(rig.state, "record", fail_record)
    else:
        transition = rig.timers.store.transition

        async def fail_confirm(timer: TimedDisable, event: TimerEvent, **kwargs: Any) -> TimedDisable | None:
            if event is TimerEvent.CONFIRMED:
                raise StateUnavailable("test database", "the database went away")
            return await transition(timer, event, **kwargs)

        monkeypatch.setattr(rig.timers.store, "transition", fail_confirm)

    woken: list[bool] = []
    rig.timers.wake = lambda: woken.append(True)
    assert await guard(rig, bot_flood_action="disable").handle(flood_of(rig, hook)) == "disabled"

    monkeypatch.undo()
    assert rig.doc(hook)["enabled"] is False
    [notice] = rig.notices()
    assert "so I disabled it until" in notice["msg"] and "in 1 h (flood guard)" in notice["msg"], notice["msg"]
    assert [a["text"] for a in notice["attachments"][0]["actions"]] == ["Re-enable now"]
    # The scheduler, woken, confirms its timer at its next round, and turns it back on when due.
    assert woken
    scheduler = Scheduler(rig.timers, rig.clock)
    assert await scheduler.run_once() == rig.clock.now() + timedelta(hours=1)
    [timer] = await rig.timers.active()
    assert timer.reason == "flood guard"
    if failing == "its timer's confirmation":
        assert [r.action for r in await rig.state.history()] == ["disable"]
    rig.clock.advance(timedelta(hours=1))
    await scheduler.run_once()
    assert rig.doc(hook)["enabled"] is True and "is back on" in rig.notices()[-1]["msg"]
