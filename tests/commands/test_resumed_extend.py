"""`extend`, `extend all` and a re-timing `disable X for …` interrupted (kill -9) after the timer's
end moved and before the audit row, then resumed: the end moves once, the audit row exists once.

These commands write nothing to Rocket.Chat, so the write journal (bot/runtime/journal.py) cannot
tell that they already acted; the timer row records which command set its end
(bot/state/timer_store.py, `TimedDisable.extended_by`). The kill is a BaseException raised by the
audit row's recording (`changes.note`), which comes right after the timer's UPDATE; the process's
state (the in-memory store) is kept, as a file or a database keeps it across a restart. The
resumed run comes some minutes later, as a restart or a replica's take-over does: an extension
counted again would show as a later end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from set_harness import Harness, open_journaled_harness

from bot.state.timer_states import TimedDisable
from commands import changes
from commands.reply import Reply

LATER = timedelta(minutes=7)  # from the kill to the resumed run


class Killed(BaseException):
    """Stands for kill -9 between the timer's new end and the audit row."""


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = await open_journaled_harness()
    try:
        yield harness
    finally:
        await harness.close()


def ids(h: Harness, label: str) -> str:
    return str(h.seeded["integrations"][label]["id"])


async def _timer(h: Harness, integration_id: str) -> TimedDisable:
    toolkit = h.services.incident
    assert toolkit is not None
    timer = await toolkit.timers.pending_for(integration_id)
    assert timer is not None
    return timer


async def _killed_then_resumed(
    h: Harness, monkeypatch: pytest.MonkeyPatch, text: str, *, audited_first: int = 0, between: Any = None
) -> Reply:
    """Run `text` until its audit row number `audited_first + 1` (the kill), then, LATER, resume it."""
    message, invocation = h.message("admin", "ops", text)
    real = changes.note
    noted = 0

    async def note(*args: Any, **kwargs: Any) -> int:
        nonlocal noted
        noted += 1
        if noted > audited_first:
            raise Killed
        return await real(*args, **kwargs)

    monkeypatch.setattr(changes, "note", note)
    try:
        with pytest.raises(Killed):
            await h.run_claimed(message, invocation)
    finally:
        monkeypatch.setattr(changes, "note", real)
    h.clock.advance(LATER)
    if between is not None:
        await between()
    return await h.run_claimed(message, invocation, resumed=True)


async def _rows(h: Harness, action: str) -> list[tuple[str, datetime | None]]:
    return sorted((r.integration_name, r.until) for r in await h.services.state.history() if r.action == action)


async def test_a_resumed_extend_extends_once_and_records_it_once(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = ids(h, "grafana")
    assert (await h.say("admin", "ops", f"!integration disable {hook} for 30m")).outcome == "changed"
    before = (await _timer(h, hook)).due_at
    reply = await _killed_then_resumed(h, monkeypatch, f"!integration extend {hook} 1h")
    assert reply.outcome == "changed", reply.text
    assert "stays disabled" in reply.text
    due = (await _timer(h, hook)).due_at
    assert due == before + timedelta(hours=1)  # not 2 h, nor 1 h from the resumed run's "now"
    assert await _rows(h, "extend") == [("Grafana", due)]


async def test_a_command_extended_by_someone_else_meanwhile_is_still_found_done(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller got no answer and clicked "Extend 1 h" (a new command) before the first one was
    resumed: both count once, the resumed one does not add a third hour."""
    hook = ids(h, "grafana")
    assert (await h.say("admin", "ops", f"!integration disable {hook} for 30m")).outcome == "changed"
    before = (await _timer(h, hook)).due_at

    async def click() -> None:
        assert (await h.say("admin", "ops", f"!integration extend {hook} 1h")).outcome == "changed"

    reply = await _killed_then_resumed(h, monkeypatch, f"!integration extend {hook} 1h", between=click)
    assert reply.outcome == "changed", reply.text
    due = (await _timer(h, hook)).due_at
    assert due == before + timedelta(hours=2)
    assert [name for name, _ in await _rows(h, "extend")] == ["Grafana", "Grafana"]


async def test_a_resumed_extend_all_extends_each_member_once(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after the first member's audit row, with the second member's end moved and unrecorded."""
    reply = await h.say("admin", "ops", "!integration disable all in #alerts for 30m --yes")
    assert reply.outcome == "changed", reply.text
    members = [ids(h, "grafana"), ids(h, "deploy-announcer")]
    before = {m: (await _timer(h, m)).due_at for m in members}
    reply = await _killed_then_resumed(h, monkeypatch, "!integration extend all in #alerts 1h", audited_first=1)
    assert reply.outcome == "changed", reply.text
    assert "Extended 2 of 2" in reply.text
    after = {m: (await _timer(h, m)).due_at for m in members}
    assert after == {m: due + timedelta(hours=1) for m, due in before.items()}
    assert await _rows(h, "extend") == sorted([("Grafana", after[members[0]]), ("Deploy announcer", after[members[1]])])
    groups = await h.services.state.groups.recent(target_room_id=h.room("alerts"))
    assert groups[0].due_at == max(after.values())


async def test_a_resumed_extend_all_near_the_maximum_is_not_refused_for_its_own_extension(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted from the end it already set, the resumed run would exceed BOT_MAX_DISABLE and refuse
    the whole command, although it extended the members."""
    maximum = h.services.settings.bot_max_disable
    reply = await h.say("admin", "ops", "!integration disable all in #alerts for 30m --yes")
    assert reply.outcome == "changed", reply.text
    span = maximum - timedelta(hours=1)
    text = f"!integration extend all in #alerts {int(span.total_seconds() // 60)}m"
    reply = await _killed_then_resumed(h, monkeypatch, text, audited_first=1)
    assert reply.outcome == "changed", reply.text
    assert len(await _rows(h, "extend")) == 2


async def test_a_resumed_retiming_disable_keeps_the_end_it_set(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """`disable X for 2h` on a timed-disabled X sets the end from now: resumed, it would set it again
    from the resumed run's now (LATER more). It keeps the end it set and records it once."""
    hook = ids(h, "grafana")
    assert (await h.say("admin", "ops", f"!integration disable {hook} for 30m")).outcome == "changed"
    first = h.clock()
    reply = await _killed_then_resumed(h, monkeypatch, f"!integration disable {hook} for 2h")
    assert reply.outcome == "changed", reply.text
    due = (await _timer(h, hook)).due_at
    assert due == first + timedelta(hours=2)
    assert await _rows(h, "retime") == [("Grafana", due)]


async def test_a_resumed_extend_all_records_its_extension_when_another_member_is_now_past_the_maximum(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after its first member's new end, before that member's audit row; meanwhile someone
    extended the other member close to BOT_MAX_DISABLE. Was: the resumed run checked the maximum
    against every member before its loop and refused the whole command, so the extension it had
    made was never recorded (`history` and `undo` did not know it). Now that member is refused on
    its own, as in the loop, and the extension made is answered and recorded."""
    maximum = h.services.settings.bot_max_disable
    reply = await h.say("admin", "ops", "!integration disable all in #alerts for 30m --yes")
    assert reply.outcome == "changed", reply.text
    members = [ids(h, "grafana"), ids(h, "deploy-announcer")]
    before = {m: (await _timer(h, m)).due_at for m in members}

    async def someone_extends_the_other() -> None:
        (other,) = [m for m in members if (await _timer(h, m)).due_at == before[m]]
        left = (await _timer(h, other)).due_at - h.clock.now
        span = maximum - left - timedelta(minutes=30)
        typed = f"!integration extend {other} {int(span.total_seconds() // 60)}m"
        assert (await h.say("admin", "ops", typed)).outcome == "changed"

    reply = await _killed_then_resumed(
        h, monkeypatch, "!integration extend all in #alerts 1h", between=someone_extends_the_other
    )
    assert reply.outcome == "changed", reply.text
    assert "Extended 1 of 2" in reply.text and "longer than the" in reply.text, reply.text
    extended = [m for m in members if (await _timer(h, m)).due_at == before[m] + timedelta(hours=1)]
    assert len(extended) == 1
    assert [until for _, until in await _rows(h, "extend") if until == before[extended[0]] + timedelta(hours=1)]
