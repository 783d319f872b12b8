"""`disable all in #room …` and `disable all matching "name*" …`: many integrations at once, always
previewed (`confirm <code>`, `yes`, the button) unless `--yes` is in the command.

Selection, for the caller:
- `in #x`: the room the caller means is resolved first — a room of theirs named `x`, else one of
  theirs whose id is `x`, else a public channel named (then: with the id) `x`. Rocket.Chat resolves
  a `#x` channel entry by id OR name, so an integration matches when one of its `#` entries is that
  room's name or its id; the preview says which room (and id) it took, and marks a member whose
  entry may also mean another room (a room named after this room's id, `Room.ambiguous`).
- `matching "glob"`: a case-insensitive glob (`*`, `?`) on names, in the normal form names are
  compared in (`bot.normalize.name_glob`).
Of what matches, only integrations the caller's own `list` shows AND that they may change (the
same rule a single disable applies, channel membership included) are candidates. Those the caller
sees but may not change are only counted (never named, never given by id); those the caller cannot
see are not even counted (a count of them would answer guesses at hidden names, a glob at a time).
Candidates already off are listed as such and left alone. More than `BOT_BULK_MAX` to switch off
is refused (narrow it with `incoming`/`outgoing`).

The preview is stored like `set`'s (`bot.state.confirmations`, under `BULK_TARGET`), so any
replica confirms it. Applying switches each previewed member off exactly as a single `disable`
does (commands/disabling.py: lossless, verified, audited; with `for`, its own timer row), each
read again under its lock and with the caller's rights checked again; a member that fails is
reported and the others go on.

The members are one group (a `bulk_groups` row, bot/state/group_store.py; their timers and audit
rows carry its id): `snoozed` and `history` show the group as one entry, the scheduler re-enables
each member carefully as today and tells the room once when none is pending any more
(bot/incident/timers.py), `undo` reverts every member's change (commands/undo.py), and
`enable all …` / `extend all …` (here) act on the running members of the selector's groups.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.errors import (
    BotError,
    ClaimTakenOver,
    EditedSince,
    ServerRejected,
    StateUnavailable,
    UsageError,
    UserInputError,
)
from bot.integrations.authz import CallerRights, RoomMemo, room_entries, visible_in_list
from bot.integrations.documents import changed_fields, saved_again
from bot.integrations.service import intended_document
from bot.integrations.wording import ENABLED_MARK
from bot.normalize import name_glob, name_key
from bot.rocketchat.models import Integration, UpdateOutcome
from bot.state.confirmations import BULK_TARGET, PendingChange
from bot.state.group_store import BulkGroup, GroupDraft
from bot.state.store import AuditRecord
from bot.state.timer_states import TimedDisable, TimerState
from bot.text import bullet_list, code, human_duration, human_until, plural, quote_name, safe_text
from commands import changes, replies
from commands.args import BulkArgs, parse_bulk_args, parse_bulk_enable, parse_bulk_extend, refuse_time_limit
from commands.disabling import plain, timed, why
from commands.incident import command, may_see, toolkit
from commands.parser import Token
from commands.registry import CommandContext
from commands.reply import Button, Reply
from commands.set import split_yes
from commands.targets import KIND_TYPES, require_lookup

# How many names a list in a preview or an answer shows before "… and N more".
SHOWN = 25
# Errors about the whole command rather than one member (the state database is away, or another
# process took the command over): the loop over members stops and the command ends with them.
WHOLE_COMMAND = (ClaimTakenOver, StateUnavailable)
# The audit rows read for one group: four per member at the largest BOT_BULK_MAX (500).
GROUP_ROWS = 4 * 500


@dataclass(frozen=True)
class Room:
    room_id: str
    name: str | None
    # Entries (bare `x`) that may also mean another room: another room is named like this room's
    # id, or has this room's name as its id (Rocket.Chat reads `#x` as an id or a name).
    ambiguous: frozenset[str] = frozenset()

    @property
    def entries(self) -> frozenset[str]:
        """The bare `x` of the `#x` channel entries that post into this room."""
        return frozenset({self.room_id} | ({self.name} if self.name else set()))

    def described(self) -> str:
        return quote_name(f"#{self.name}") if self.name else f"the room with id {code(self.room_id)}"


@dataclass
class Selection:
    """What a bulk selector matched, for one caller."""

    to_switch: list[Integration] = field(default_factory=list)
    already_off: list[Integration] = field(default_factory=list)
    # Matching and in the caller's `list`, but not theirs to change. What the caller cannot see is
    # not counted at all (a count would tell them whether a hidden name matches their guess).
    not_allowed: int = 0
    # Candidates whose only entries naming the room may also mean another room (`Room.ambiguous`).
    ambiguous: set[str] = field(default_factory=set)


async def run(ctx: CommandContext, args: Sequence[Token]) -> Reply:
    tokens, confirmed = split_yes(args)
    settings = ctx.services.settings
    parsed = parse_bulk_args(tokens, maximum=settings.bot_max_disable)
    if parsed.duration is None:  # `until 5pm`: asked about, not "off for good" (commands/args.py)
        refuse_time_limit(
            "disable all", parsed.reason, quoted=parsed.reason_quoted, example=f"disable all {parsed.selector} for 2h"
        )
    rights = await ctx.rights()
    require_lookup(ctx, rights, parsed.kind)
    room = await resolve_room(ctx, rights, parsed.room) if parsed.room is not None else None
    selection = await select(ctx, rights, parsed, room)
    if not selection.to_switch:
        none = f"no {_noun(parsed)}s {_what(parsed, room)} that you may change are on"
        return Reply(f"Nothing to switch off: {none}.{_left_alone(selection)}", outcome="unchanged")
    maximum = settings.bot_bulk_max
    if len(selection.to_switch) > maximum:
        raise UserInputError(
            f"{_counted(len(selection.to_switch), parsed, room)} are on; I switch off at most {maximum} per command "
            "(BOT_BULK_MAX). Narrow it with `incoming`/`outgoing` or a closer pattern. Nothing was changed."
        )
    if confirmed:
        await _resumed_members(ctx, selection)
        return await apply(ctx, parsed, room, selection.to_switch, left_alone=_left_alone(selection))
    timeout = settings.bot_confirm_timeout
    pending = await ctx.services.pending.add(
        user_id=ctx.message.user_id,
        room_id=ctx.message.room_id,
        integration_id=BULK_TARGET,
        snapshot={"members": [member.document for member in selection.to_switch]},
        updates=_stored_args(parsed, room),
        now=ctx.now(),
        ttl=timeout,
    )
    prefix = ctx.services.prefix
    confirm = f"{prefix} confirm {pending.code}"
    yes = "yes" if ctx.invocation.is_direct else f"{prefix} yes"
    count = plural(len(selection.to_switch), _noun(parsed))
    text = (
        f"🔌 Switch off {_counted(len(selection.to_switch), parsed, room)}{_for(parsed.duration)}?"
        f"{why(parsed.reason)}\n"
        f"{_matched(room)}{_names(selection.to_switch, selection.ambiguous)}{_left_alone(selection)}\n"
        f"To apply it, reply {code(confirm)} (or {code(yes)}) within {human_duration(timeout)}."
    )
    return Reply(text, buttons=(Button(f"Switch off {count}", confirm),), outcome="preview")


async def _resumed_members(ctx: CommandContext, selection: Selection) -> None:
    """This very `--yes` command resumed after a crash: the members it had started switching off
    (a write intent of this message, bot/runtime/journal.py) are members still, though now off."""
    if await ctx.services.state.groups.for_message(ctx.message.id) is None:
        return
    started = {intent.integration_id for intent in await ctx.services.state.intents(ctx.message.id)}
    again = [i for i in selection.already_off if i.id in started]
    selection.already_off = [i for i in selection.already_off if i.id not in started]
    selection.to_switch = sorted([*selection.to_switch, *again], key=_order)


async def resolve_room(ctx: CommandContext, rights: CallerRights, wanted: str) -> Room:
    """The room the caller means by `#wanted` (see the module docstring), with the entries that may
    also mean another room; `UserInputError` when there is none they could mean (a private group
    they are not in is never found)."""
    room = await _meant_room(ctx, rights, wanted)
    ambiguous: set[str] = set()
    rest = ctx.services.rest
    lookups = [(room.room_id, {"room_name": room.room_id})]
    if room.name:
        lookups.append((room.name, {"room_id": room.name}))
    for entry, lookup in lookups:
        try:
            other = await rest.rooms_info(**lookup)
        except ServerRejected as exc:
            if exc.error_type == "error-room-not-found":
                continue
            ambiguous.add(entry)  # it exists, but the bot may not open it: it may be another room
            continue
        if other.get("_id") != room.room_id:
            ambiguous.add(entry)
    return Room(room.room_id, room.name, frozenset(ambiguous))


async def _meant_room(ctx: CommandContext, rights: CallerRights, wanted: str) -> Room:
    by_name = rights.room_ids_by_name or {}
    if wanted in by_name:
        return Room(by_name[wanted], wanted)
    if rights.room_ids is not None and wanted in rights.room_ids:
        names = [name for name, rid in by_name.items() if rid == wanted]
        return Room(wanted, names[0] if names else None)
    rest = ctx.services.rest
    for lookup in ({"room_name": wanted}, {"room_id": wanted}):
        try:
            found = await rest.rooms_info(**lookup)
        except ServerRejected:  # no such room, or one the bot may not open: not one to name here
            continue
        room_id, name = found.get("_id"), found.get("name")
        if found.get("t") == "c" and isinstance(room_id, str):
            return Room(room_id, name if isinstance(name, str) else None)
    raise UserInputError(
        f"I can't find a room {quote_name('#' + wanted)} that you are in (or a public channel of that name). "
        "Nothing was changed."
    )


async def select(ctx: CommandContext, rights: CallerRights, parsed: BulkArgs, room: Room | None) -> Selection:
    """Every integration the selector matches, sorted into the caller's candidates and the rest."""
    matches = name_glob(parsed.glob) if parsed.glob is not None else None
    chosen = Selection()
    integrations = ctx.services.integrations
    # Many members carry the same `#room` entry: each distinct entry is looked up once for the
    # whole selection. Applying checks each member again, rooms looked up anew, under its lock.
    memo = RoomMemo(rights)
    async for document in ctx.services.rest.iter_integrations(type=KIND_TYPES[parsed.kind]):
        if room is not None and not room.entries.intersection(room_entries(document)):
            continue
        name = document.get("name")
        if matches is not None and not (isinstance(name, str) and matches(name)):
            continue
        if not visible_in_list(rights, document):
            continue  # not even counted: the caller may not learn that it exists
        integration = Integration.of(document)
        decision = await integrations.may_write(rights, intended_document(integration, {"enabled": False}), memo=memo)
        if not decision.allowed:
            chosen.not_allowed += 1
        elif integration.enabled:
            chosen.to_switch.append(integration)
            if room is not None and room.entries.intersection(room_entries(document)) <= room.ambiguous:
                chosen.ambiguous.add(integration.id)
        else:
            chosen.already_off.append(integration)
    chosen.to_switch.sort(key=_order)
    chosen.already_off.sort(key=_order)
    return chosen


def _order(integration: Integration) -> tuple[str, str, str]:
    return name_key(integration.name), integration.type, integration.id


async def confirmed(ctx: CommandContext, change: PendingChange) -> Reply:
    """`confirm`/`yes` for a stored bulk preview (taken by the caller): apply it."""
    parsed, room = _loaded_args(change.updates)
    members = [Integration.of(doc) for doc in change.snapshot.get("members", ()) if isinstance(doc, Mapping)]
    try:
        reply = await apply(ctx, parsed, room, members)
        with suppress(StateUnavailable):
            await ctx.services.pending.applied(change, now=ctx.now())
        return reply
    finally:
        with suppress(StateUnavailable):
            await ctx.services.pending.release(change)


async def apply(
    ctx: CommandContext, parsed: BulkArgs, room: Room | None, members: Sequence[Integration], *, left_alone: str = ""
) -> Reply:
    """Switch each member off as a single `disable` would; a failing member never stops the others.
    The members are one group (bot/state/group_store.py): one entry in `history` and `snoozed`,
    back on together, and `undo`, `extend`/`enable all …` act on all of them."""
    now = ctx.now()
    due = now + parsed.duration if parsed.duration is not None else None
    message = ctx.message
    group = await ctx.services.state.groups.create(
        GroupDraft(
            created_at=now,
            actor_id=message.user_id,
            actor_username=message.username,
            selector=_selector(parsed, room),
            message_id=message.id,
            target_room_id=room.room_id if room is not None else None,
            glob=parsed.glob,
            kind=parsed.kind,
            reason=parsed.reason,
            due_at=due,
            room_id=message.room_id,
            thread_id=message.thread_id,
        )
    )
    due = group.due_at if group.due_at is not None else due  # resumed: the end it was given first
    done: list[Integration] = []
    unchanged: list[Integration] = []
    failed: list[str] = []
    not_made: list[Integration] = []  # resumed from the text it had when it ran, its message edited since
    for member in members:
        try:
            if parsed.duration is not None:
                answer = await timed(ctx, member, parsed.reason, parsed.duration, group_id=group.id, due=due)
            else:
                answer = await plain(ctx, member, parsed.reason, group_id=group.id)
        except WHOLE_COMMAND:
            raise  # about the whole command, not this member: it stops here
        except EditedSince:
            not_made.append(member)
            continue
        except BotError as exc:
            failed.append(f"{replies.label(member)}: {problem(ctx, exc)}")
            continue
        (done if answer.outcome == "changed" else unchanged).append(member)
    # A member switched off for good is a member by its audit row alone (`_untimed_members`: what
    # `enable all …` switches back on, through any replica): recorded before the answer, not after
    # it as a single disable's is; the runtime's own run of them is then a no-op.
    await ctx.services.followups.run(tuple(ctx.deferred))
    until = f" {human_until(due, now)}" if due is not None else ""
    lines = [f"🔌 Switched off {len(done)} of {_counted(len(members), parsed, room)}{until}."]
    if parsed.reason:
        lines.append(f"Reason: {safe_text(parsed.reason)}")
    if done:
        lines.append("Switched off:\n" + _names(done))
    if unchanged:
        lines.append("Left as they were (already off, or changed meanwhile):\n" + _names(unchanged))
    if failed:
        lines.append("Failed (nothing changed on these):\n" + bullet_list(failed, limit=SHOWN))
    if not_made:
        lines.append(f"Not switched off, as your message was {ctx.as_it_ran or 'edited'} since:\n" + _names(not_made))
    outcome = "changed" if done else ("failed" if failed else "unchanged")
    buttons = _group_buttons(ctx, parsed) if done else ()
    if due is None:
        buttons = buttons[:1]  # nothing timed to extend
    return Reply("\n".join(lines) + left_alone, buttons=buttons, outcome=outcome)


def _left_as_they_are(count: int) -> str:
    one = count == 1
    return f"{plural(count, 'more member')} {'is' if one else 'are'} left as {'it is' if one else 'they are'}"


def problem(ctx: CommandContext, exc: BotError) -> str:
    """What went wrong for one member, on one line (the first of the answer the error would get)."""
    registry = ctx.services.registry
    why = replies.for_error(exc, invocation=ctx.invocation, registry=registry).text if registry else str(exc)
    return next(iter(why.splitlines()), "") or type(exc).__name__


def _selector(parsed: BulkArgs, room: Room | None) -> str:
    if room is not None:
        return f"in #{room.name or room.room_id}"
    return parsed.selector


def _typed(parsed: BulkArgs) -> str | None:
    """The selector as a command names it again (for buttons); None when it cannot be re-typed."""
    if parsed.room is not None:
        return f"in #{parsed.room}"
    if parsed.glob is not None and '"' not in parsed.glob:
        return f'matching "{parsed.glob}"'
    return None


def _group_buttons(ctx: CommandContext, parsed: BulkArgs) -> tuple[Button, ...]:
    typed = _typed(parsed)
    if typed is None:
        return ()
    return _all_buttons(ctx, typed, parsed.kind)


def _all_buttons(ctx: CommandContext, selector: str, kind: str | None) -> tuple[Button, ...]:
    """`enable all …` now and `extend all … 1h` for the selector as typed (`in #alerts`, `matching "x*"`)."""
    typed = f"{selector} {kind}" if kind else selector
    return (
        Button("Re-enable all now", command(ctx, "enable", "all", typed)),
        Button("Extend all 1 h", command(ctx, "extend", "all", typed, "1h")),
    )


# --- groups as other commands show them (`snoozed`, `history`) ----------------------------------


def shown_selector(group: BulkGroup, rights: CallerRights, *, here: str) -> str:
    """`in #alerts` / `matching "jenkins*"` for this reader: a room is named only when it is the
    room being talked in or a public channel the caller is in (an answer is read by everyone in
    its room; a private group's name stays inside it)."""
    if group.target_room_id is None:
        return f"matching {quote_name(group.glob or '')}"
    name = group.selector.removeprefix("in #")
    by_name = rights.room_ids_by_name or {}
    if group.target_room_id == here or (by_name.get(name) == group.target_room_id and name in rights.channel_names):
        return f"in {quote_name('#' + name)}"
    return _ANOTHER_ROOM


_ANOTHER_ROOM = "in another room"


def group_buttons(ctx: CommandContext, group: BulkGroup, rights: CallerRights) -> tuple[Button, ...]:
    """The buttons of a running group: re-enable its members now, or keep them off an hour longer.
    None when the answer does not name the group's room for this reader (`shown_selector`): a
    button's command is read by everyone in the room, and would name it."""
    if '"' in (group.glob or "") or (group.target_room_id is not None and " " in group.selector.removeprefix("in ")):
        return ()
    if group.target_room_id is not None and shown_selector(group, rights, here=ctx.message.room_id) == _ANOTHER_ROOM:
        return ()
    return _all_buttons(ctx, group.selector, group.kind)


# --- acting on a group: `enable all …`, `extend all …` ------------------------------------------


async def _selected_groups(ctx: CommandContext, parsed: BulkArgs) -> tuple[Room | None, list[BulkGroup]]:
    rights = await ctx.rights()
    require_lookup(ctx, rights, parsed.kind)
    await ctx.answers_recorded()  # the audit rows and timers of answers already given
    room = await resolve_room(ctx, rights, parsed.room) if parsed.room is not None else None
    groups = ctx.services.state.groups
    if room is not None:
        return room, await groups.recent(target_room_id=room.room_id)
    return None, await groups.recent(glob=parsed.glob)


async def _running(ctx: CommandContext, parsed: BulkArgs, groups: Sequence[BulkGroup]) -> list[TimedDisable]:
    """The members of `groups` whose timed disable is running (of the kind named, if any)."""
    timers = toolkit(ctx).timers.store
    wanted = KIND_TYPES[parsed.kind]
    found: dict[str, TimedDisable] = {}
    for group in groups:
        for timer in await timers.in_group(group.id):
            if timer.state is TimerState.ACTIVE and (wanted is None or timer.integration_type == wanted):
                found.setdefault(timer.integration_id, timer)
    return list(found.values())


def _member_document(timer: TimedDisable) -> dict[str, Any]:
    document = dict(timer.disabled_document or {})
    document.setdefault("_id", timer.integration_id)
    document.setdefault("name", timer.integration_name)
    document.setdefault("type", timer.integration_type)
    return document


async def enable_all(ctx: CommandContext, args: Sequence[Token]) -> Reply:
    """`enable all in #room` / `enable all matching "x*"`: end the running bulk disables of that
    selector now (or, with none running, switch on again what the latest one, without a duration,
    switched off and no later command changed: `_enable_untimed`), each member switched on as a
    single `enable` would (rights checked, lossless)."""
    parsed = parse_bulk_enable(args)
    room, groups = await _selected_groups(ctx, parsed)
    rights = await ctx.rights()
    # Members the caller cannot see are left out before anything is counted: the answer is the
    # same as if they were not members at all.
    members: list[tuple[dict[str, Any], TimedDisable | None, int | None]] = [
        (document, timer, timer.group_id)
        for timer in await _running(ctx, parsed, groups)
        if may_see(rights, document := _member_document(timer))
    ]
    timed_ones = bool(members)
    if not members and groups and groups[0].due_at is None:
        members = [member for member in await _untimed_members(ctx, parsed, groups[0]) if may_see(rights, member[0])]
    what = _what(parsed, room)
    if not members:
        return Reply(f"Nothing to switch back on: no {code('disable all')} {what} is running.", outcome="unchanged")
    done: list[Integration] = []
    unchanged: list[Integration] = []
    failed: list[str] = []
    changed_since: list[Integration] = []
    for document, timer, group_id in members:
        member = Integration.of(document)
        try:
            if timer is None:
                outcome, untouched = await _enable_untimed(ctx, rights, document, group_id)
                if not untouched:
                    changed_since.append(outcome.after)
                    continue
            else:
                outcome, running = await _enable_timed(ctx, rights, member, timer)
                if running is None:  # its timer of the group ended meanwhile: on already, or left off
                    (unchanged if outcome.after.enabled else changed_since).append(outcome.after)
                    continue
        except WHOLE_COMMAND:
            raise  # about the whole command, not this member: it stops here
        except BotError as exc:
            failed.append(f"{replies.label(member)}: {problem(ctx, exc)}")
            continue
        if timer is None:
            (done if outcome.changed else unchanged).append(outcome.after)  # recorded under its lock
        elif outcome.changed:
            # A member's timer ends with this audit row (`TimerService.follow_change`): the one seen
            # under its lock, not one set since by someone else (the member's lock is free again here).
            await changes.record(ctx, outcome, "enable", group_id=group_id, timer=running)
            done.append(outcome.after)
        else:
            unchanged.append(outcome.after)  # its timer dropped under its lock (`_enable_timed`)
    lines = [f"{ENABLED_MARK} Switched on {len(done)} of {_counted(len(members), parsed, room)}."]
    if done:
        cancelled = " (their timed disable is cancelled)" if timed_ones else ""
        lines.append(f"Switched on{cancelled}:\n" + _names(done))
    if unchanged:
        dropped = " (their timed disable is dropped)" if timed_ones else ""
        lines.append(f"Already on{dropped}:\n" + _names(unchanged))
    if changed_since:
        lines.append("Left off (changed since the group switched them off):\n" + _names(changed_since))
    if failed:
        lines.append("Failed (still off):\n" + bullet_list(failed, limit=SHOWN))
    outcome_word = (
        "changed" if done or unchanged else "failed" if failed else "conflict" if changed_since else "unchanged"
    )
    return Reply("\n".join(lines), outcome=outcome_word)


async def _enable_timed(
    ctx: CommandContext, rights: CallerRights, member: Integration, timer: TimedDisable
) -> tuple[UpdateOutcome, TimedDisable | None]:
    """Switch on a member whose timed disable of the group (`timer`, read before its lock) was
    running, as a single `enable` does: its timer as pending under the member's lock is looked up
    with the write, and dropped there when it was on already. A member whose timer of the group
    ended meanwhile (switched on, or on and off again for a while, through another replica) is left
    as it is: the second value is then None, else the timer seen under the lock (the one its audit
    row ends)."""
    timers = toolkit(ctx).timers
    async with ctx.services.integrations.editing(member, planned={"enabled": True}, rights=rights) as edit:
        pending = await timers.pending_for(member.id)
        if pending is None or pending.id != timer.id or pending.state is not TimerState.ACTIVE:
            return UpdateOutcome(before=edit.current, after=edit.current, changed=False), None
        outcome = await edit.apply({"enabled": True}, rights=rights)
        if not outcome.changed:
            await timers.end_early(pending, f"already enabled; dropped by {ctx.message.username}")
        else:
            # Ended here, as a single `enable` ends it (`changes.apply_seeing_timer`): once the
            # lock is free, the timer falling due would take this write for the bot's own
            # re-enable. When ending it fails, the audit row's ending tries again.
            with suppress(StateUnavailable):
                await timers.end_early(pending, changes.ending_note("enable", ctx.message.username))
        return outcome, pending


async def _enable_untimed(
    ctx: CommandContext, rights: CallerRights, disabled: Mapping[str, Any], group_id: int | None
) -> tuple[UpdateOutcome, bool]:
    """Switch on a member of a group without a duration, only if it is still as the group's
    disable left it (`disabled`, that audit row's document), as `undo` compares: anything changed
    or saved since (a deliberate later disable, say) is left as it is. Compared, written and
    recorded under the member's lock. Returns the outcome (no write when it is already on or was
    changed since) and whether it was untouched since."""
    async with ctx.services.integrations.editing(disabled) as edit:
        current = edit.current
        if current.enabled:
            return UpdateOutcome(before=current, after=current, changed=False), True
        if changed_fields(disabled, current.document) or saved_again(disabled, current.document):
            return UpdateOutcome(before=current, after=current, changed=False), False
        outcome = await edit.apply({"enabled": True}, rights=rights)
        if outcome.changed:
            await changes.record(ctx, outcome, "enable", group_id=group_id)
        return outcome, True


async def _untimed_members(
    ctx: CommandContext, parsed: BulkArgs, group: BulkGroup
) -> list[tuple[dict[str, Any], TimedDisable | None, int | None]]:
    """What a bulk disable without a duration switched off (its members' audit rows), of the kind named."""
    # Every row of the group, whatever BOT_BULK_MAX is now (it may have been higher when it was made).
    rows = await ctx.services.state.history(group_id=group.id, limit=GROUP_ROWS)
    wanted = KIND_TYPES[parsed.kind]
    latest: dict[str, AuditRecord] = {}
    for row in rows:  # newest first: a member's latest row of this group
        latest.setdefault(row.integration_id, row)
    # A member the group already switched on again (`enable all`, `undo`) is used up: only those
    # whose latest row of the group is still its own disable are members to switch on.
    return [
        (row.after, None, group.id)
        for row in reversed(latest.values())
        if row.action == "disable" and row.after is not None and (wanted is None or row.integration_type == wanted)
    ]


async def extend_all(ctx: CommandContext, args: Sequence[Token]) -> Reply:
    """`extend all in #room 1h`: every running member of the selector's bulk disables stays off
    longer (from its current end), as `extend` does for one."""
    maximum = ctx.services.settings.bot_max_disable
    parsed = parse_bulk_extend(args, maximum=maximum)
    assert parsed.duration is not None
    room, groups = await _selected_groups(ctx, parsed)
    rights = await ctx.rights()
    # Members the caller cannot see are left out before anything is counted or compared.
    running = [timer for timer in await _running(ctx, parsed, groups) if may_see(rights, _member_document(timer))]
    what = _what(parsed, room)
    if not running:
        return Reply(f"Nothing to extend: no timed {code('disable all')} {what} is running.", outcome="unchanged")
    timers = toolkit(ctx).timers
    now = ctx.now()
    allowed: list[TimedDisable] = []
    memo = RoomMemo(rights)  # a `#room` entry many members carry is looked up once (as `select` does)
    for timer in running:
        member = Integration.of(_member_document(timer))
        if (await ctx.services.integrations.may_write(rights, member, memo=memo)).allowed:
            allowed.append(timer)
    not_allowed = len(running) - len(allowed)
    # Only the members this command would extend are measured against the maximum: a refusal
    # tells nothing about the end of one the caller may not change.
    # A member this very command extended already (resumed after a crash) counts with the end it set.
    latest = max(
        (timer.extended_by(ctx.message.id) or max(timer.due_at, now) + parsed.duration for timer in allowed),
        default=None,
    )
    # Checked before anything moves, on a first run only: a run resumed after a crash has moved
    # ends already (its first run passed this check), and refused whole it would leave them
    # unrecorded. A member someone extended meanwhile is then refused on its own, below.
    resumed = ctx.as_it_ran is not None or any(timer.extended_by(ctx.message.id) for timer in allowed)
    if latest is not None and latest - now > maximum and not resumed:
        raise UsageError(
            "extend all",
            f"that would keep them off {human_until(latest, now).removeprefix('until ')}, "
            f"longer than the {human_duration(maximum)} allowed",
        )
    done: list[Integration] = []
    dues: dict[str, datetime] = {}  # the new end of each member extended
    extended_groups: dict[int, datetime] = {}
    failed: list[str] = []
    not_made: list[Integration] = []  # resumed from what it said when it ran, its message changed since
    for timer in allowed:
        member = Integration.of(_member_document(timer))
        try:
            # Decided on the member and its timer as they are under its lock (as `extend` does):
            # the new end counts from the timer's end now, so a longer one set meanwhile is kept.
            async with ctx.services.integrations.editing(member) as edit:
                pending = await timers.pending_for(timer.integration_id)
                if pending is None or pending.id != timer.id or pending.state is not TimerState.ACTIVE:
                    failed.append(f"{replies.label(member)}: its timed disable ended meanwhile")
                    continue
                if edit.current.enabled:
                    failed.append(f"{replies.label(member)}: it is on again")
                    continue
                # Extended by this very command already (resumed after a crash before the
                # member's audit row): not again (bot/state/timer_store.py).
                done_by_this = pending.extended_by(ctx.message.id)
                if done_by_this is None and ctx.as_it_ran is not None:
                    not_made.append(member)  # not extended when it ran: not now either
                    continue
                due = done_by_this or max(pending.due_at, now) + parsed.duration
                if done_by_this is None and due - now > maximum:
                    failed.append(
                        f"{replies.label(member)}: that would keep it off longer than the {human_duration(maximum)} "
                        "allowed"
                    )
                    continue
                if done_by_this is None and await timers.extend(pending, due, by=ctx.message.id) is None:
                    failed.append(f"{replies.label(member)}: its timed disable changed meanwhile")
                    continue
                await changes.note(ctx, edit.current, "extend", until=due, group_id=timer.group_id)
                done.append(edit.current)
                dues[timer.integration_id] = due
                if timer.group_id is not None:
                    extended_groups[timer.group_id] = max(due, extended_groups.get(timer.group_id, due))
        except WHOLE_COMMAND:
            raise  # about the whole command, not this member: it stops here
        except BotError as exc:
            failed.append(f"{replies.label(member)}: {problem(ctx, exc)}")
    # A group's end moves to the latest end of the members actually extended (never earlier than
    # it was): a member refused or left alone does not set it.
    group_dues = {group.id: group.due_at for group in groups}
    for group_id, due in extended_groups.items():
        before = group_dues.get(group_id)
        await ctx.services.state.groups.set_due(group_id, max(due, before) if before is not None else due)
    until = human_until(max(dues[i.id] for i in done), now) if done else ""
    lines = [
        f"⏰ Extended {len(done)} of {_counted(len(running), parsed, room)} by {human_duration(parsed.duration)}"
        + (f": off {until}." if done else ".")
    ]
    if done:
        lines.append(_names(done))
    if not_made:
        lines.append(f"Not extended, as your message was {ctx.as_it_ran} since:\n" + _names(not_made))
    if failed:
        lines.append("Not extended:\n" + bullet_list(failed, limit=SHOWN))
    if not_allowed:
        lines.append(f"{_left_as_they_are(not_allowed)} (you may not change {'it' if not_allowed == 1 else 'them'}).")
    return Reply(
        "\n".join(lines),
        buttons=_group_buttons(ctx, parsed) if done else (),
        outcome="changed" if done else "unchanged",
    )


def _noun(parsed: BulkArgs) -> str:
    return f"{parsed.kind} integration" if parsed.kind else "integration"


def _what(parsed: BulkArgs, room: Room | None) -> str:
    if room is not None:
        return f"posting into {room.described()}"
    return f"with names matching {quote_name(parsed.glob or '')}"


def _counted(count: int, parsed: BulkArgs, room: Room | None) -> str:
    return f"{plural(count, _noun(parsed))} {_what(parsed, room)}"


def _for(duration: timedelta | None) -> str:
    return f" for {human_duration(duration)}" if duration is not None else ""


def _names(integrations: Sequence[Integration], ambiguous: Collection[str] = ()) -> str:
    return bullet_list(
        (replies.label(i) + (_MAY_BE_ELSEWHERE if i.id in ambiguous else "") for i in integrations), limit=SHOWN
    )


_MAY_BE_ELSEWHERE = " ⚠️ its channel entry may also mean another room"


def _matched(room: Room | None) -> str:
    """For a room: which channel entries count as posting into it (Rocket.Chat reads `#x` as a
    room's id or its name, so both do)."""
    if room is None:
        return ""
    entries = " or ".join(code(f"#{entry}") for entry in sorted(room.entries, key=lambda e: e != room.name))
    how = "Rocket.Chat reads `#x` as a name or an id"
    return f"(the room with id {code(room.room_id)}: channel entries {entries}; {how})\n"


def _left_alone(selection: Selection) -> str:
    parts = []
    if selection.already_off:
        parts.append("\nAlready off (left alone):\n" + _names(selection.already_off))
    if selection.not_allowed:
        count = plural(selection.not_allowed, "more matching integration")
        parts.append(f"\n{count} that you may not change {'is' if selection.not_allowed == 1 else 'are'} left out.")
    return "".join(parts)


def _stored_args(parsed: BulkArgs, room: Room | None) -> dict[str, Any]:
    return {
        "bulk": {
            "room": parsed.room,
            "glob": parsed.glob,
            "kind": parsed.kind,
            "seconds": parsed.duration.total_seconds() if parsed.duration is not None else None,
            "reason": parsed.reason,
            "room_id": room.room_id if room is not None else None,
            "room_name": room.name if room is not None else None,
        }
    }


def _loaded_args(updates: Mapping[str, Any]) -> tuple[BulkArgs, Room | None]:
    stored = updates.get("bulk") or {}
    seconds = stored.get("seconds")
    kind = stored.get("kind")
    parsed = BulkArgs(
        room=stored.get("room"),
        glob=stored.get("glob"),
        kind=kind if kind in ("incoming", "outgoing") else None,
        duration=timedelta(seconds=float(seconds)) if seconds is not None else None,
        reason=stored.get("reason"),
    )
    room_id = stored.get("room_id")
    room = Room(str(room_id), stored.get("room_name")) if room_id is not None else None
    return parsed, room
