"""`undo`: revert the caller's last change made through the bot, if nobody changed it since.

"Last change" is the caller's newest audit row that changed a document (enable, disable, set,
...; extending a timer changes no document and is not undone). Before writing, the stored
integration is compared with the document that change produced (`bot.integrations.documents`): any
difference, or a newer save, means someone (or the bot's timer) changed it since, and undo says
what changed and writes nothing. Otherwise every field the change touched is written back
through the lossless `Edit.apply`, verified, and the undo is itself an audit row. The comparison
and the write hold the integration's lock (bot/integrations/locks.py), so no change of the bot's lands between.

An `undo` resumed after a crash (bot/runtime/recovery.py) reverts the change it had begun to
revert, the one its write intents name (bot/runtime/journal.py): of the integration each names,
the change whose document the intent was read from (the same `_updatedAt`), never one its caller
made since (through another replica, while its claim's lease ran), of another integration or of
that one: that one was not theirs to undo when they asked. With no intent stored (nothing
written yet), it is the newest change, as for any undo.

An undo is not undone by the next `undo` (it says so instead): two undos in a row would flip
an incident setting back and forth, which is rarely what a hurried responder means. Re-apply
the change with its command instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from bot.errors import BotError, IntegrationNotFound, PermissionDenied, UsageError, VerificationFailed
from bot.incident.timers import LOOK, SeenTimer
from bot.integrations import wording
from bot.integrations.authz import CallerRights, may_list, may_update
from bot.integrations.change_lines import room_safe_change_lines
from bot.integrations.documents import changed_fields, last_touch, restore_changes, saved_again
from bot.integrations.service import Edit
from bot.rocketchat.ejson import decode_date
from bot.rocketchat.models import UpdateOutcome
from bot.state.store import AuditRecord, WriteIntent
from bot.text import ago, bullet_list, code, quote_name, safe_text
from commands import bulk, changes
from commands.bulk import WHOLE_COMMAND
from commands.parser import Token
from commands.registry import Command, CommandContext
from commands.reply import Reply

SCANNED: Final = 50


def _conflict(
    last: AuditRecord, current: Mapping[str, Any], what: str, now: datetime, rights: CallerRights
) -> Reply | None:
    """The answer when the integration changed since `last` produced it (undo would clobber that).
    Rooms the caller is not in are not named in it."""
    assert last.after is not None
    if not changed_fields(last.after, current) and not saved_again(last.after, current):
        return None
    changed = changed_fields(last.after, current)
    touch = last_touch(current)
    who = ""
    if touch.username or touch.at is not None:
        parts = [safe_text(touch.username)] if touch.username else []
        if touch.at is not None:
            parts.append(ago(touch.at, now))
        who = f" (last saved by {', '.join(parts)})"
    details = (
        ":\n" + room_safe_change_lines(last.after, current, changed, rights.sees_room)
        if changed
        else ", saved again without visible changes."
    )
    return Reply(
        f"⚠️ I did not undo {what}: it was changed since{who}, and undoing now would overwrite that. "
        f"Nothing was changed. What differs from right after your change{details}",
        outcome="conflict",
    )


async def _record(
    ctx: CommandContext,
    outcome: UpdateOutcome,
    last: AuditRecord,
    *,
    resumed: bool = False,
    timer: SeenTimer = LOOK,
) -> None:
    """The undo's own audit row, naming the change it reverts (`resumed`: its write was made before
    a crash, `changes.record_resumed`; else under the lock, following `timer`)."""
    reason = f"reverts the {last.action} made {last.at:%H:%M} UTC"
    if resumed:
        await changes.record_resumed(ctx, outcome, "undo", reason=reason, undoes=last.id, group_id=last.group_id)
        return
    await changes.record(ctx, outcome, "undo", reason=reason, undoes=last.id, group_id=last.group_id, timer=timer)


async def _undone_before(edit: Edit, last: AuditRecord) -> UpdateOutcome | None:
    """This command's undo of `last`, written before a crash (the journal's replay; None when it
    is not resumed, or had not written this one: judged as any undo then)."""
    assert last.before is not None and last.after is not None
    try:
        return await edit.replayed(restore_changes(last.before, last.after))
    except VerificationFailed:  # changed since its write: the conflict check says so
        return None


async def _begun(ctx: CommandContext, intents: Sequence[WriteIntent]) -> list[AuditRecord]:
    """The caller's changes a resumed undo may be the undo of, newest first: those of the
    integrations its write intents name. Among them, the one whose document each intent was read
    from (the same `_updatedAt`: an undo writes only over the document its change produced) is
    the change it had begun to revert; a newer change of that integration, made since, is not
    (nor is one of another integration). None found so (a document without its stamp): those of
    the integrations named."""
    begun = sorted({intent.integration_id for intent in intents})
    rows = await ctx.services.state.history(actor_id=ctx.message.user_id, integration_ids=begun, limit=SCANNED)
    named = _undoable(rows, ctx.message.id)
    read = {intent.integration_id: decode_date(intent.before.get("_updatedAt")) for intent in intents}
    begun_from = [
        r
        for r in named
        if r.after is not None
        and read.get(r.integration_id) is not None
        and decode_date(r.after.get("_updatedAt")) == read[r.integration_id]
    ]
    return begun_from or named


def _undoable(rows: Sequence[AuditRecord], message_id: str) -> list[AuditRecord]:
    """The changes among `rows` an undo may revert: those with a document before and after, not
    this command's own (resumed after a crash midway through a group)."""
    return [r for r in rows if r.before is not None and r.after is not None and r.message_id != message_id]


def _label(row: AuditRecord) -> str:
    return f"{quote_name(row.integration_name)} ({wording.kind_word(row.integration_type)})"


async def run(ctx: CommandContext, args: Sequence[Token]) -> Reply:
    if args:
        raise UsageError("undo", "`undo` takes nothing after it: it reverts your last change")
    rights = await ctx.rights()
    listing = may_list(rights)
    if not listing.allowed:
        raise PermissionDenied("undo changes", listing.missing, detail=listing.reason or None)
    await ctx.answers_recorded()  # the audit rows and timers of answers already given
    now = ctx.now()
    rows = await ctx.services.state.history(actor_id=ctx.message.user_id, limit=SCANNED)
    message_id = ctx.message.id
    undoable = _undoable(rows, message_id)
    if ctx.services.integrations.resuming():
        # Resumed after a crash: the change it had begun to revert, not one its caller made since,
        # through another replica while its lease ran (of that very integration, too).
        intents = await ctx.services.state.intents(message_id)
        if intents:
            undoable = await _begun(ctx, intents)
    last = next(iter(undoable), None)
    if last is None or last.before is None or last.after is None:
        return Reply("You have made no change through me that I could undo.", outcome="empty")
    what = f"your {code(last.action)} of {_label(last)}, {ago(last.at, now)}"
    if last.action == "undo":
        return Reply(
            f"Your last change was already an undo ({what}); I don't undo an undo. "
            "Run the command again to redo the change.",
            outcome="unchanged",
        )
    if last.group_id is not None:
        return await _undo_group(ctx, rights, last, now)
    done = await ctx.services.integrations.resumed()  # resumed after a crash, its write stored
    if done is not None:
        current = done.before.document
        restore = restore_changes(done.after.document, current)
        await _record(ctx, done, last, resumed=True)
        return _undone(what, current, restore, done, rights)
    return await _undo_one(ctx, rights, last, what, now)


async def _undo_one(ctx: CommandContext, rights: CallerRights, last: AuditRecord, what: str, now: datetime) -> Reply:
    """Revert the change `last` made, unless the integration changed since."""
    assert last.before is not None and last.after is not None
    try:
        # The comparison and the write hold the integration's lock: nothing of the bot's lands between.
        async with ctx.services.integrations.editing(last.after) as edit:
            current = edit.current.document
            # Someone who may no longer change it is told nothing about how it looks now.
            allowed = may_update(rights, edit.current)
            if not allowed.allowed:
                raise PermissionDenied(f"undo {what}", allowed.missing, detail=allowed.reason)
            replayed = await _undone_before(edit, last)
            if replayed is not None:
                # Resumed after a crash: this very command had undone it (a member of a group
                # undo, say) before its audit row; not a change made since by someone else.
                timer = LOOK if changes.written_last(edit.current, replayed) else None
                before = replayed.before.document
                await _record(ctx, replayed, last, timer=timer)
                return _undone(what, before, restore_changes(replayed.after.document, before), replayed, rights)
            conflict = _conflict(last, current, what, now, rights)
            if conflict is not None:
                return conflict
            restore = restore_changes(last.before, current)
            if not restore:
                return Reply(f"Nothing to undo for {what}: it already looks as before.", outcome="unchanged")
            poster = restore.get("username")
            if isinstance(poster, str) and poster.casefold() == ctx.services.identity.username.casefold():
                # As `set` refuses: a webhook posting as the bot would pass for its answers.
                return Reply(
                    f"I did not undo {what}: it would make my own account its post-as user again. Nothing was changed.",
                    outcome="refused",
                )
            outcome = await edit.apply(restore, rights=rights)
            # Recorded under the lock, so a timer of this integration firing next sees its row re-based.
            await _record(ctx, outcome, last)
    except IntegrationNotFound:
        return Reply(f"I can't undo {what}: the integration no longer exists.", outcome="not-found")
    return _undone(what, current, restore, outcome, rights)


async def _undo_group(ctx: CommandContext, rights: CallerRights, last: AuditRecord, now: datetime) -> Reply:
    """The caller's last change was a bulk disable (`disable all …`): every member's change of
    that command is reverted as a single undo would revert it (each checked on its own: a member
    changed since is left as it is and said so); one failing member never stops the others."""
    assert last.group_id is not None
    rows = await ctx.services.state.history(
        group_id=last.group_id, actor_id=ctx.message.user_id, limit=ctx.services.settings.bot_bulk_max * 4
    )
    members = [r for r in rows if r.action == last.action and r.before is not None and r.after is not None]
    group = await ctx.services.state.groups.get(last.group_id)
    selector = f" {bulk.shown_selector(group, rights, here=ctx.message.room_id)}" if group is not None else ""
    done: list[str] = []
    left: list[str] = []
    for row in reversed(members):  # in the order they were changed
        member = _label(row)
        try:
            answer = await _undo_one(ctx, rights, row, f"your {code(row.action)} of {member}", now)
        except WHOLE_COMMAND:
            raise  # about the whole command, not this member: it stops here
        except BotError as exc:
            left.append(f"{member}: {bulk.problem(ctx, exc)}")
            continue
        if answer.outcome == "changed":
            done.append(member)
        else:
            left.append(f"{member}: {answer.text.splitlines()[0]}")
    lines = [
        f"↩️ Undid your {code(last.action + ' all')}{selector} ({ago(last.at, now)}) "
        f"for {len(done)} of {len(members)} integration{'s' if len(members) != 1 else ''}."
    ]
    if done:
        lines.append(bullet_list(done))
    if left:
        lines.append("Left as they are:\n" + bullet_list(left))
    return Reply("\n".join(lines), outcome="changed" if done else "conflict")


def _undone(
    what: str, current: Mapping[str, Any], restore: Mapping[str, Any], outcome: UpdateOutcome, rights: CallerRights
) -> Reply:
    restored = room_safe_change_lines(current, restore, restore, rights.sees_room)
    off = "\nIt stays disabled until someone enables it." if outcome.after.enabled is False else ""
    return Reply(f"↩️ Undid {what}:\n{restored}{off}", outcome="changed")


COMMAND = Command(
    name="undo",
    summary="revert your last change made through me, if nobody changed it since",
    usage="undo",
    details=(
        "Reverts your last change made through me (every field it changed), unless the integration "
        "was changed since; then it says what changed and does nothing. An undo is not undone by another undo."
    ),
    examples=("undo",),
    handler=run,
    changes_integrations=True,
)
