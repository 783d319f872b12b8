"""`quiet <name|id>` (the flood notice's "Quiet for today"): until midnight UTC, for those who may
change the integration only, kept in the state store, only ever lengthened."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from set_harness import Harness

from commands.quiet import end_of_day


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_the_end_of_the_day_is_the_next_midnight_utc(now: datetime) -> None:
    end = end_of_day(now)
    assert end.tzinfo is UTC and (end.hour, end.minute, end.second, end.microsecond) == (0, 0, 0, 0)
    assert 0 < (end - now).total_seconds() <= 86_400


async def test_quiet_is_kept_for_this_room_until_midnight(h: Harness) -> None:
    hook = h.control.create_incoming_integration("Pager", channel="#general", created_by="admin")
    reply = await h.say("admin", "general", f"!integration quiet {hook['_id']}")
    assert reply.outcome == "changed" and "No flood notices about `Pager`" in reply.text, reply.text
    assert "00:00 UTC" in reply.text
    quiet = await h.services.state.floods.quiet_until(hook["_id"], h.room("general"))
    assert quiet is not None and quiet.by == "admin" and quiet.until == end_of_day(h.services.clock())
    assert await h.services.state.floods.quiet_until(hook["_id"], h.room("ops")) is None  # this room only


async def test_someone_who_cannot_change_it_cannot_silence_it_and_learns_nothing(h: Harness) -> None:
    hook = h.control.create_incoming_integration("Secret pager", channel="#general", created_by="admin")
    for user in ("alice", "owen"):
        reply = await h.say(user, "general", f"!integration quiet {hook['_id']}")
        assert reply.outcome != "changed" and "Secret pager" not in reply.text, reply.text
        assert "can't" in reply.text or "can’t" in reply.text, reply.text
    assert await h.services.state.floods.quiet_until(hook["_id"], h.room("general")) is None


async def test_words_after_the_name_are_refused_and_nothing_is_silenced(h: Harness) -> None:
    hook = h.control.create_incoming_integration("Pager", channel="#general", created_by="admin")
    for command in ("quiet", "enable"):
        reply = await h.say("admin", "general", f'!integration {command} "Pager" for today')
        assert reply.outcome == "usage", reply.text
        assert f"`{command}` takes only a name" in reply.text and "for today" in reply.text, reply.text
    assert await h.services.state.floods.quiet_until(hook["_id"], h.room("general")) is None
