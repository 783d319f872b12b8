"""What a restart decides for each command a crash left unfinished (against the sandbox)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from reliability_support import World, call, world

from bot.errors import Unavailable
from bot.runtime.catchup import member_rooms
from bot.runtime.direct_rooms import DirectRooms
from bot.runtime.intake import Intake
from bot.runtime.journal import JournaledIntegrationService
from bot.runtime.recovery import Close, Decision, Interrupted, Recovery, Resume
from bot.state.store import AuditRecord, ClaimedCommand, StateStore, WriteIntent
from bot.state.timer_states import TimerEvent
from bot.state.timer_store import TimerDraft

TWO_MIN = timedelta(minutes=2)


@pytest.fixture(scope="module")
def sandbox_world() -> Iterator[World]:
    with world() as w:
        w.control.create_room("lobby", members=["admin", "alice"], owner="admin")
        yield w


class Parts:
    def __init__(self, w: World, state: StateStore, offset: timedelta = timedelta(0)) -> None:
        self.world = w
        self.state = state
        self.rest = w.rest(max_attempts=1)
        self.offset = offset
        self.journal = JournaledIntegrationService(self.rest, state, self.clock)
        bot = w.creds()
        self.intake = Intake(
            bot_user_id=bot["userId"],
            bot_username=bot["username"],
            prefixes=("!integration",),
            direct_rooms=DirectRooms(self.rest),
        )

    def clock(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def recovery(self, orphans: list[str]) -> Recovery:
        return Recovery(
            orphans,
            rest=self.rest,
            ids=self.state.message_ids,
            intake=self.intake,
            journal=self.journal,
            claims=self.state,
            clock=self.clock,
            stale_age=TWO_MIN,
        )

    def answer_id(self, command: dict[str, Any], attempt: int = 0) -> str:
        return self.state.message_ids.answer(command["_id"])[attempt]

    async def decide(self, message_id: str) -> Decision:
        return await self.recovery([message_id]).decide(message_id, await member_rooms(self.rest))


@pytest.fixture
async def parts(sandbox_world: World, tmp_path: Path) -> AsyncIterator[Callable[..., Parts]]:
    state = await StateStore.open(tmp_path / "s.db")
    made: list[Parts] = []

    def make(offset: timedelta = timedelta(0)) -> Parts:
        made.append(Parts(sandbox_world, state, offset))
        return made[-1]

    yield make
    for p in made:
        await p.rest.aclose()
    await state.close()


async def post(w: World, user: str, room: str, text: str) -> dict[str, Any]:
    return await call(w.control.post_message, user, room, text)


async def test_a_fresh_unfinished_command_is_resumed(sandbox_world: World, parts: Any) -> None:
    command = await post(sandbox_world, "admin", "ops", "!integration list")
    decision = await parts().decide(command["_id"])
    assert isinstance(decision, Resume)
    assert decision.accepted.invocation is not None and decision.accepted.invocation.command == "list"


@pytest.mark.parametrize("attempt", [0, 2], ids=["first-id", "last-id-of-the-chain"])
async def test_a_command_already_answered_is_only_closed(sandbox_world: World, parts: Any, attempt: int) -> None:
    p = parts()
    command = await post(sandbox_world, "admin", "ops", "!integration help")
    answer_id = p.answer_id(command, attempt)
    await call(sandbox_world.control.post_message, "integrations-bot", "ops", "the answer", message_id=answer_id)
    decision = await p.decide(command["_id"])
    assert decision == Close(command["_id"], "recovered: answered before the restart")


@pytest.mark.parametrize(
    ("author", "room", "in_thread"),
    [
        ("owen", "ops", False),  # a user posted a fake answer with the answer's id
        ("integrations-bot", "alerts", False),  # the bot's message with that id, in another room
        ("integrations-bot", "ops", True),  # ... in the right room, but in a thread
    ],
    ids=["by-a-user", "in-another-room", "in-another-thread"],
)
async def test_only_the_bots_own_answer_in_the_commands_room_and_thread_counts(
    sandbox_world: World, parts: Any, author: str, room: str, in_thread: bool
) -> None:
    p = parts()
    command = await post(sandbox_world, "admin", "ops", "!integration list")
    thread = (await post(sandbox_world, "admin", room, "a thread"))["_id"] if in_thread else None
    for attempt in range(3):
        await call(
            sandbox_world.control.post_message,
            author,
            room,
            "✅ Done",
            tmid=thread,
            message_id=p.answer_id(command, attempt),
        )
    decision = await p.decide(command["_id"])
    assert isinstance(decision, Resume) and decision.accepted.message.id == command["_id"]


async def answered_after_a_landed_write(w: World, p: Parts, name: str) -> str:
    """A `disable` whose write landed and whose answer was stored, then the process died."""
    hook = await call(w.control.create_incoming_integration, name, channel="#ops")
    command = await post(w, "admin", "ops", f"!integration disable {name}")
    document = await p.rest.integrations_get(hook["_id"])
    await p.state.claim_message(command["_id"], command["rid"], p.clock(), p.clock())  # by the process that died
    await p.state.record_intent(
        WriteIntent(command["_id"], hook["_id"], p.clock(), document, {**document, "enabled": False})
    )
    await call(w.control.update_integration, hook["_id"], {"enabled": False})
    await call(w.control.post_message, "integrations-bot", "ops", "Disabled", message_id=p.answer_id(command))
    return str(command["_id"])


async def test_an_answered_command_whose_audit_row_is_missing_is_resumed_to_record_it(
    sandbox_world: World, parts: Any
) -> None:
    # The answer goes out before the audit row (commands/followups.py): a crash in between
    # leaves a landed write, a stored answer and no row. Resuming replays the write (not sent
    # again) and records the row; the answer is the same message id, so nothing new is shown.
    p = parts(timedelta(minutes=5))  # even when stale: the write landed
    message_id = await answered_after_a_landed_write(sandbox_world, p, "recovery-answered-unrecorded")
    decision = await p.decide(message_id)
    assert isinstance(decision, Resume)
    assert decision.accepted.message.id == message_id


async def test_an_answered_command_with_its_audit_row_is_only_closed(sandbox_world: World, parts: Any) -> None:
    p = parts()
    message_id = await answered_after_a_landed_write(sandbox_world, p, "recovery-answered-recorded")
    await p.state.record(
        AuditRecord(
            at=p.clock(),
            actor_id="u",
            actor_username="admin",
            integration_id="i",
            integration_name="recovery-answered-recorded",
            integration_type="webhook-incoming",
            action="disable",
            room_id="r",
            message_id=message_id,
        )
    )
    decision = await p.decide(message_id)
    assert decision == Close(message_id, "recovered: answered before the restart")


async def test_a_stale_command_that_wrote_nothing_is_not_run_again(sandbox_world: World, parts: Any) -> None:
    command = await post(sandbox_world, "admin", "ops", "!integration disable Alertmanager")
    decision = await parts(timedelta(minutes=5)).decide(command["_id"])
    assert isinstance(decision, Interrupted) and "too old" in decision.reason
    assert decision.message.id == command["_id"]


async def test_a_stale_command_whose_write_landed_is_resumed_to_report_it(sandbox_world: World, parts: Any) -> None:
    p = parts(timedelta(minutes=5))
    hook = await call(sandbox_world.control.create_incoming_integration, "recovery-landed", channel="#ops")
    command = await post(sandbox_world, "admin", "ops", "!integration disable recovery-landed")
    document = await p.rest.integrations_get(hook["_id"])
    await p.state.claim_message(command["_id"], command["rid"], p.clock(), p.clock())  # by the process that died
    await p.state.record_intent(
        WriteIntent(command["_id"], hook["_id"], p.clock(), document, {**document, "enabled": False})
    )
    await call(sandbox_world.control.update_integration, hook["_id"], {"enabled": False})  # the PUT had landed
    decision = await p.decide(command["_id"])
    assert isinstance(decision, Resume)


async def test_a_stale_extend_that_moved_a_timers_end_is_resumed_to_report_it(sandbox_world: World, parts: Any) -> None:
    """`extend` writes no document (no write intent): the timer row names it. Told "not run again",
    the caller would extend a second time by hand."""
    p = parts(timedelta(minutes=5))
    command = await post(sandbox_world, "admin", "ops", "!integration extend recovery-extended 1h")
    await p.state.claim_message(command["_id"], command["rid"], p.clock(), p.clock())  # by the process that died
    now = p.clock()
    draft = TimerDraft("i-ext", "recovery-extended", "webhook-incoming", now, now + timedelta(minutes=30), "u", "admin")
    timer = await p.state.timers.schedule(draft)
    assert timer is not None
    timer = await p.state.timers.transition(timer, TimerEvent.CONFIRMED, at=now, document={"enabled": False})
    assert timer is not None
    assert isinstance(await p.decide(command["_id"]), Interrupted)  # nothing done yet
    extended = await p.state.timers.transition(
        timer, TimerEvent.EXTENDED, at=now, due_at=now + timedelta(minutes=90), by=command["_id"]
    )
    assert extended is not None
    assert isinstance(await p.decide(command["_id"]), Resume)


async def test_an_edited_command_is_not_run_again(sandbox_world: World, parts: Any) -> None:
    command = await post(sandbox_world, "admin", "ops", "!integration disable Alertmanager")
    await call(sandbox_world.control.edit_message, command["_id"], "!integration enable Alertmanager")
    decision = await parts().decide(command["_id"])
    assert isinstance(decision, Interrupted) and "edited" in decision.reason


async def test_a_command_without_prefix_in_a_dm_with_the_bot_alone_is_resumed(sandbox_world: World, parts: Any) -> None:
    # The restarted process has not met the DM yet: the sweep learns its members first.
    dm = sandbox_world.seed["rooms"]["dm:admin:integrations-bot"]
    command = await post(sandbox_world, "admin", dm, "list incoming")
    decision = await parts().decide(command["_id"])
    assert isinstance(decision, Resume) and decision.accepted.invocation is not None
    assert (decision.accepted.invocation.command, decision.accepted.invocation.is_direct) == ("list", True)


async def test_chat_in_a_group_dm_claimed_as_a_command_is_closed_silently(sandbox_world: World, parts: Any) -> None:
    # Claimed by a release that took every DM for a one-to-one: by today's rules it is not a command.
    group = sandbox_world.control.create_direct("admin", "alice", others=["integrations-bot"])["_id"]
    chat = await post(sandbox_world, "admin", group, "disable Alertmanager, right alice?")
    decision = await parts().decide(chat["_id"])
    assert decision == Close(chat["_id"], "recovered: not a command", ignored=True)


async def test_a_dm_whose_members_cannot_be_read_now_is_decided_later(sandbox_world: World, parts: Any) -> None:
    dm = sandbox_world.seed["rooms"]["dm:admin:integrations-bot"]
    command = await post(sandbox_world, "admin", dm, "list")
    p = parts()
    await call(sandbox_world.control.fail_next, "rooms.info", 1, "500")
    with pytest.raises(Unavailable):
        await p.decide(command["_id"])
    assert isinstance(await p.decide(command["_id"]), Resume)


async def test_gone_messages_and_foreign_rooms_are_closed_silently(sandbox_world: World, parts: Any) -> None:
    p = parts()
    assert await p.decide("NoSuchMessage1234") == Close("NoSuchMessage1234", "recovered: message gone", ignored=True)
    elsewhere = await post(sandbox_world, "alice", "lobby", "!integration list")
    decision = await p.decide(elsewhere["_id"])
    assert isinstance(decision, Close) and decision.ignored


async def test_a_sweep_interrupted_by_a_rest_failure_resumes_where_it_stopped(sandbox_world: World, parts: Any) -> None:
    p = parts()
    first = await post(sandbox_world, "admin", "ops", "!integration help")
    second = await post(sandbox_world, "admin", "ops", "!integration list")
    recovery = p.recovery([first["_id"], second["_id"]])
    rooms = await member_rooms(p.rest)
    acted: list[Decision] = []

    async def act(decision: Decision) -> None:
        acted.append(decision)
        if len(acted) == 1:  # Rocket.Chat stops answering right after the first decision
            await call(sandbox_world.control.fail_next, "chat.getMessage", 1, "500")

    with pytest.raises(Unavailable):
        await recovery.sweep(rooms, act)
    assert recovery.remaining == [second["_id"]] and len(acted) == 1
    await recovery.sweep(rooms, act)
    assert recovery.remaining == []
    assert [d.accepted.message.id for d in acted if isinstance(d, Resume)] == [first["_id"], second["_id"]]


async def landed_then_edited(w: World, p: Parts, name: str, *, text: str | None, landed: bool = True) -> str:
    """A `disable` whose intent was recorded (with the command's text, or without as an older
    release stored it), its write landed or not, the process died, then the caller edited it."""
    hook = await call(w.control.create_incoming_integration, name, channel="#ops")
    said = f"!integration disable {name}"
    command = await post(w, "admin", "ops", said)
    document = await p.rest.integrations_get(hook["_id"])
    await p.state.claim_message(command["_id"], command["rid"], p.clock(), p.clock())  # by the process that died
    intended = {**document, "enabled": False}
    await p.state.record_intent(
        WriteIntent(command["_id"], hook["_id"], p.clock(), document, intended, text=said if text else None)
    )
    if landed:
        await call(w.control.update_integration, hook["_id"], {"enabled": False})
    await call(w.control.edit_message, command["_id"], f"!integration enable {name}")
    return str(command["_id"])


async def test_an_edited_command_whose_write_landed_is_resumed_as_it_ran(sandbox_world: World, parts: Any) -> None:
    """Was: "not run again: it was edited since", while its change was made, and no audit row."""
    p = parts(timedelta(minutes=5))  # even when stale: the write landed
    message_id = await landed_then_edited(sandbox_world, p, "recovery-edited-landed", text="stored")
    decision = await p.decide(message_id)
    assert isinstance(decision, Resume) and decision.edited
    message = decision.accepted.message
    assert (message.id, message.text, message.edited_at) == (
        message_id,
        "!integration disable recovery-edited-landed",
        None,
    )
    assert decision.accepted.invocation is not None and decision.accepted.invocation.command == "disable"


@pytest.mark.parametrize(
    ("text", "landed"), [(None, True), ("stored", False)], ids=["no-text-of-an-older-release", "nothing-landed"]
)
async def test_an_edited_command_is_not_run_again_without_its_text_or_a_landed_write(
    sandbox_world: World, parts: Any, text: str | None, landed: bool
) -> None:
    p = parts()
    message_id = await landed_then_edited(
        sandbox_world, p, f"recovery-edited-{text}-{landed}", text=text, landed=landed
    )
    decision = await p.decide(message_id)
    assert isinstance(decision, Interrupted) and "edited" in decision.reason


async def test_an_answered_edited_command_whose_audit_row_is_missing_is_resumed_as_it_ran(
    sandbox_world: World, parts: Any
) -> None:
    p = parts()
    message_id = await landed_then_edited(sandbox_world, p, "recovery-edited-answered", text="stored")
    await call(
        sandbox_world.control.post_message,
        "integrations-bot",
        "ops",
        "Disabled",
        message_id=p.answer_id({"_id": message_id}),
    )
    decision = await p.decide(message_id)
    assert isinstance(decision, Resume) and decision.edited
    assert decision.accepted.message.text == "!integration disable recovery-edited-answered"


async def replaced_after_a_landed_write(
    w: World, p: Parts, name: str, *, path: str, author_stored: bool = True
) -> dict[str, Any]:
    """Admin's `disable` of owen's integration, its write landed, the process died before its audit
    row; admin's message deleted, owen posted a message with its id (any unused id may be taken,
    contract gotcha 26): the same command (`unedited`), then edited (`edited`), or the same after
    admin's answer was stored (`answered`). `author_stored` False: an intent of an older release."""
    hook = await call(w.control.create_incoming_integration, name, channel="#ops", created_by="owen")
    said = f"!integration disable {name}"
    command = await post(w, "admin", "ops", said)
    document = await p.rest.integrations_get(hook["_id"])
    await p.state.claim_message(command["_id"], command["rid"], p.clock(), p.clock())  # by the process that died
    author = command["u"]["_id"] if author_stored else None
    intended = {**document, "enabled": False}
    await p.state.record_intent(
        WriteIntent(command["_id"], hook["_id"], p.clock(), document, intended, text=said, author=author)
    )
    await call(w.control.update_integration, hook["_id"], {"enabled": False})
    if path == "answered":
        await call(w.control.post_message, "integrations-bot", "ops", "Disabled", message_id=p.answer_id(command))
    await call(w.control.delete_message, command["_id"])
    await call(w.control.post_message, "owen", "ops", said, message_id=command["_id"])
    if path == "edited":
        await call(w.control.edit_message, command["_id"], "!integration help")
    return command


@pytest.mark.parametrize("path", ["unedited", "edited", "answered"])
async def test_another_users_message_at_the_id_of_a_command_whose_write_landed_is_not_resumed(
    sandbox_world: World, parts: Any, path: str
) -> None:
    """Was: resumed as owen's command (audited and answered as his change: `undo` rights over it);
    in the edited path, admin's stored text ran as owen's command."""
    p = parts()
    command = await replaced_after_a_landed_write(sandbox_world, p, f"recovery-replaced-{path}", path=path)
    decision = await p.decide(command["_id"])
    assert decision == Close(command["_id"], "recovered: message replaced", ignored=True)


async def test_another_users_message_at_the_id_of_a_command_of_an_older_release_is_decided_as_before(
    sandbox_world: World, parts: Any
) -> None:
    """Its intents name no author: nothing to compare with (the message is taken for the command)."""
    p = parts()
    command = await replaced_after_a_landed_write(
        sandbox_world, p, "recovery-replaced-older", path="unedited", author_stored=False
    )
    decision = await p.decide(command["_id"])
    assert isinstance(decision, Resume) and decision.accepted.message.username == "owen"


async def landed_then_deleted(
    w: World, p: Parts, name: str, *, landed: bool = True, keeps_status: bool = False
) -> dict[str, Any]:
    """A `disable` claimed by a process that kept what it said on its claim, its write landed or not,
    the process died, then the message was deleted (gone, or kept as `t: "rm"` with an empty text,
    as Rocket.Chat keeps it with `Message_ShowDeletedStatus`)."""
    hook = await call(w.control.create_incoming_integration, name, channel="#ops")
    said = f"!integration disable {name} because noisy"
    command = await post(w, "admin", "ops", said)
    sent = datetime.fromisoformat(command["ts"].replace("Z", "+00:00"))
    kept = ClaimedCommand(said, command["u"]["_id"], command["u"]["username"])
    assert await p.state.claim_messages(
        [(command["_id"], command["rid"], sent)], p.clock(), commands={command["_id"]: kept}
    )
    document = await p.rest.integrations_get(hook["_id"])
    intent = WriteIntent(command["_id"], hook["_id"], p.clock(), document, {**document, "enabled": False})
    await p.state.record_intent(intent)
    if landed:
        await call(w.control.update_integration, hook["_id"], {"enabled": False})
    if keeps_status:
        removed = {**command, "msg": "", "t": "rm"}
        get_message = p.rest.chat_get_message

        async def kept_as_removed(message_id: str) -> dict[str, Any]:
            return removed if message_id == command["_id"] else await get_message(message_id)

        p.rest.chat_get_message = kept_as_removed  # type: ignore[method-assign]
    else:
        await call(w.control.delete_message, command["_id"])
    return command


@pytest.mark.parametrize("keeps_status", [False, True], ids=["gone", "kept-as-removed"])
async def test_a_deleted_command_whose_write_landed_is_resumed_from_its_claim(
    sandbox_world: World, parts: Any, keeps_status: bool
) -> None:
    """Was: closed as "message gone" (or "not a command"), its change never audited."""
    p = parts()
    command = await landed_then_deleted(sandbox_world, p, f"recovery-deleted-{keeps_status}", keeps_status=keeps_status)
    decision = await p.decide(command["_id"])
    assert isinstance(decision, Resume) and decision.edited and decision.deleted
    message = decision.accepted.message
    assert (message.id, message.room_id, message.user_id, message.text) == (
        command["_id"],
        command["rid"],
        command["u"]["_id"],
        f"!integration disable recovery-deleted-{keeps_status} because noisy",
    )
    assert decision.accepted.invocation is not None and decision.accepted.invocation.command == "disable"


async def test_a_deleted_command_whose_write_did_not_land_is_closed_silently(sandbox_world: World, parts: Any) -> None:
    p = parts()
    command = await landed_then_deleted(sandbox_world, p, "recovery-deleted-not-landed", landed=False)
    assert await p.decide(command["_id"]) == Close(command["_id"], "recovered: message gone", ignored=True)
