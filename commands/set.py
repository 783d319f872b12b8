"""`set <name|id> field=value ...`: change any field, after a preview the caller confirms.

    set Guggy channel=#alerts,#ops alias="Guggy bot" emoji=:ghost:
    set Jenkins triggerWords +!deploy -!build
    set Guggy emoji :ghost: --yes

Flow: parse → resolve the integration for the caller → may they change it (Rocket.Chat's rule)?
→ hold it (its lock; read again if anyone wrote it since it was resolved) → plan the change
(`bot.integrations.fields`: every value validated with Rocket.Chat's rules) → check that named rooms and users
exist (all problems of both reported at once) → may they write the result (channel rules)? → can it
be sent back losslessly? Only then, either a preview with a confirmation code (stored in
`Services.pending`, see `commands.confirm`) or, with `--yes`, the write itself, still under the
lock. Nothing is written before every check has passed.

A token typed in the command is registered as a secret for the logs before anything else runs,
and is never shown: not in the preview, the reply or the audit lines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from bot import logs
from bot.errors import PermissionDenied, UserInputError
from bot.integrations.authz import may_update
from bot.integrations.change_lines import change_lines, changes_between
from bot.integrations.documents import restore_changes
from bot.integrations.fieldcheck import check_references
from bot.integrations.fields import FIELDS, NOT_SETTABLE, Invalid, draft_changes, find_field
from bot.integrations.service import Edit, build_update_body, intended_document
from bot.rocketchat.models import Integration, UpdateOutcome
from bot.text import code, human_duration, quote_name, safe_markup
from commands import changes, replies
from commands.args import HELP, parse_set_args
from commands.parser import Token
from commands.registry import Command, CommandContext
from commands.reply import Button, Reply
from commands.targets import resolve

YES_FLAG = "--yes"


def split_yes(args: Sequence[Token]) -> tuple[list[Token], bool]:
    """The arguments without `--yes` (a phone's `—yes` arrives as `--yes`), and whether it was there."""
    kept = [token for token in args if token.quoted or token.value.lower() != YES_FLAG]
    return kept, len(kept) != len(args)


def _register_secrets(assignments: Sequence[Any]) -> None:
    for assignment in assignments:
        try:
            spec = find_field(assignment.field)
        except Invalid:
            continue
        if spec.secret:
            logs.register_secret(assignment.value.strip())


def _deny(found: Integration, decision: Any) -> PermissionDenied:
    return PermissionDenied(f"change {quote_name(found.name)}", decision.missing, detail=decision.reason)


async def apply(ctx: CommandContext, edit: Edit, updates: Mapping[str, Any]) -> Reply:
    """Write `updates` to the integration held by `edit` as the caller, verify, audit, and say so."""
    outcome = await edit.apply(updates, rights=await ctx.rights())
    if not outcome.changed:
        return Reply(f"{replies.label(outcome.after)} already has those values; nothing changed.", outcome="unchanged")
    return await applied(ctx, outcome, updates)


async def resumed(ctx: CommandContext) -> Reply | None:
    """A `set` (or `confirm`) resumed after a crash whose write had landed: audited and answered
    as if it had not been interrupted (`IntegrationService.resumed`); None otherwise."""
    done = await ctx.services.integrations.resumed()
    if done is None:
        return None
    await changes.record_resumed(ctx, done, "set")
    return answer(ctx, done, restore_changes(done.after.document, done.before.document))


async def applied(ctx: CommandContext, outcome: UpdateOutcome, updates: Mapping[str, Any]) -> Reply:
    """Audit a write of `updates` that is stored (under the integration's lock), and say so."""
    await changes.record(ctx, outcome, "set")
    return answer(ctx, outcome, updates)


def answer(ctx: CommandContext, outcome: UpdateOutcome, updates: Mapping[str, Any]) -> Reply:
    """What a stored write of `updates` is answered with."""
    lines = change_lines(changes_between(outcome.before.document, updates))
    registry = ctx.services.registry
    undo = ""
    if registry is not None and registry.find("undo") is not None:
        undo = f"\nTo undo: {code(ctx.services.prefix + ' undo')}"
    return Reply(f"✅ Changed {replies.label(outcome.after)}:\n{lines}{undo}", outcome="changed")


def _refuse_scripts(ctx: CommandContext, args: Sequence[Token]) -> None:
    """Scripts are not accepted from chat. Refuse before parsing, which could quote a piece of one."""
    script_field = any(re.match(r"(?i)(script|code)\s*[+-]?=", token.typed) for token in args)
    if "```" in ctx.invocation.raw or script_field:
        raise UserInputError(f"script: {NOT_SETTABLE['script']}. Nothing was changed.")


async def run(ctx: CommandContext, args: Sequence[Token]) -> Reply:
    _refuse_scripts(ctx, args)
    tokens, confirmed = split_yes(args)
    parsed = parse_set_args(tokens)
    _register_secrets(parsed.assignments)
    if confirmed and (done := await resumed(ctx)) is not None:
        return done
    found = await resolve(ctx, parsed.target)
    rights = await ctx.rights()
    decision = may_update(rights, found)
    if not decision.allowed:
        raise _deny(found, decision)
    # The plan is made on the document the write (with `--yes`) starts from, under the
    # integration's lock: `+x`/`-x` edit the list as stored at that moment, not as it was earlier.
    async with ctx.services.integrations.editing(found) as edit:
        # The rooms a refusal may suggest: the caller's own, and of those only names every reader of
        # this answer may see: public channels, and the room the answer goes to.
        rooms = {
            name: rid
            for name, rid in (rights.room_ids_by_name or {}).items()
            if name in rights.channel_names or rid == ctx.message.room_id
        }
        # Every problem in one answer: the values, the rules across fields, what does not exist.
        plan = draft_changes(edit.current.document, parsed.assignments, rooms=rooms.keys())
        if not plan.empty or plan.problems:
            plan = await check_references(
                plan, ctx.services.rest, bot_user_id=ctx.services.identity.user_id, rooms=rooms.keys()
            )
        if plan.empty:
            return Reply(f"{replies.label(found)} already has those values; nothing to change.", outcome="unchanged")
        current = plan.integration
        decision = await ctx.services.integrations.may_write(rights, intended_document(current, plan.updates))
        if not decision.allowed:
            raise _deny(current, decision)
        build_update_body(current, plan.updates)  # NotUpdatable now rather than after the confirmation
        if confirmed:
            return await apply(ctx, edit, plan.updates)
    settings = ctx.services.settings
    timeout = settings.bot_confirm_timeout
    pending = await ctx.services.pending.add(
        user_id=ctx.message.user_id,
        room_id=ctx.message.room_id,
        integration_id=current.id,
        snapshot=current.document,
        updates=plan.updates,
        now=ctx.now(),
        ttl=timeout,
    )
    prefix = ctx.services.prefix
    confirm = f"{prefix} confirm {pending.code}"
    yes = "yes" if ctx.invocation.is_direct else f"{prefix} yes"  # bare only where no prefix is needed
    notes = "".join(f"\nNote: {safe_markup(note)}" for note in plan.notes)
    text = (
        f"✏️ Change {replies.label(current)}?\n{change_lines(plan.changes)}{notes}\n"
        f"To apply it, reply {code(confirm)} (or {code(yes)}) within {human_duration(timeout)}."
    )
    return Reply(text, buttons=(Button("Apply", confirm),), outcome="preview")


def _details() -> str:
    fields = ", ".join(spec.key for spec in FIELDS)
    return (
        "Changes fields of an integration. Shows what would change and asks you to confirm "
        f"(`confirm <code>`, `yes`, the Apply button, or `{YES_FLAG}` in the command). "
        '`field="a b"` for values with spaces; `+x`/`-x` add to or remove from channel, urls and '
        "triggerWords. In the `<field> <value>` form an unquoted name is its first word. "
        f"Fields: {fields}. Scripts can't be changed from chat; `scriptEnabled` switches one on or off."
    )


COMMAND = Command(
    name="set",
    summary="change fields of an integration (preview, then confirm)",
    usage=HELP["set"].usage,
    details=_details(),
    examples=HELP["set"].examples,
    handler=run,
    aliases=("edit",),
    changes_integrations=True,
    action="change {kind}integrations",
)
