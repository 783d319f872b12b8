"""`show <name|id>`: one integration's settings; secrets shown by presence only.

Values are shown exactly as stored (`text.verbatim`: code spans, mention-proof without changing
a character), so what people copy from here works when typed back into `set` or a command."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.integrations import wording
from bot.integrations.service import display
from bot.rocketchat.ejson import decode_date
from bot.rocketchat.models import Integration
from bot.text import ago, code, safe_text, verbatim
from commands import replies
from commands.args import HELP, parse_target
from commands.parser import Token
from commands.registry import Command, CommandContext
from commands.reply import Reply
from commands.targets import resolve


def _yes(value: Any) -> str:
    return "yes" if value is True else "no"


def _stored(value: Any, missing: str) -> str:
    """A stored value shown exactly (`verbatim`), or `missing` when it is not set."""
    return verbatim(str(value)) if replies.present(value) else missing


def _who_when(document: dict[str, Any], who: str, when: str, now: Any) -> str | None:
    person = document.get(who)
    name = person.get("username") if isinstance(person, dict) else None
    at = decode_date(document.get(when))
    if name is None and at is None:
        return None
    # `_updatedBy` is absent until the first update (contract §2.1): then just "when".
    # Who is said in prose, as in `history` (not a value to copy into a command).
    parts = [f"by {safe_text(str(name))}"] if name else []
    if at is not None:
        parts.append(ago(at, now))
    return ", ".join(parts)


def describe(integration: Integration, now: Any) -> str:
    doc = integration.document
    lines = [
        f"{verbatim(integration.name)} · {wording.kind_word(integration.type)} webhook · "
        f"{wording.mark(integration.enabled)} {wording.state_word(integration.enabled)}",
        f"id: {code(integration.id)}",
    ]
    if integration.is_outgoing:
        lines.append(f"event: {_stored(doc.get('event'), '—')}")
    if integration.channels:
        lines.append("channel: " + ", ".join(verbatim(c) for c in integration.channels))
    for key, title in (("username", "posts as"), ("alias", "alias"), ("emoji", "emoji")):
        if replies.present(doc.get(key)):
            lines.append(f"{title}: {verbatim(str(doc[key]))}")
    if replies.present(doc.get("avatar")):
        lines.append(f"avatar: {code(display('avatar', doc['avatar']))}")
    if integration.is_outgoing:
        words = doc.get("triggerWords") or []
        if words:
            anywhere = " (anywhere in the message)" if doc.get("triggerWordAnywhere") else ""
            lines.append("trigger words: " + ", ".join(verbatim(str(w)) for w in words) + anywhere)
        urls = doc.get("urls") or []
        if urls:
            lines.append("urls: " + ", ".join(code(display("urls", [u])) for u in urls))
        if replies.present(doc.get("targetRoom")):
            lines.append(f"target room: {verbatim(str(doc['targetRoom']))}")
        if doc.get("retryFailedCalls"):
            count, delay = _stored(doc.get("retryCount"), "?"), _stored(doc.get("retryDelay"), "?")
            lines.append(f"retry failed calls: {count} × {delay}")
        else:
            lines.append("retry failed calls: no")
        lines.append(
            f"run on edits: {_yes(doc.get('runOnEdits'))} · impersonate user: {_yes(doc.get('impersonateUser'))}"
        )
    script = doc.get("script")
    if replies.present(script):
        state = "on" if doc.get("scriptEnabled") else "off"
        broken = " ⚠️ has an error" if replies.present(doc.get("scriptError")) else ""
        lines.append(f"script: set, {state}{broken} (not shown)")
    else:
        lines.append("script: none")
    if integration.is_incoming:
        lines.append("webhook URL: " + ("set (not shown)" if replies.present(doc.get("token")) else "none"))
    else:
        lines.append("token: " + ("set (not shown)" if replies.present(doc.get("token")) else "none"))
    created = _who_when(doc, "_createdBy", "_createdAt", now)
    if created:
        lines.append(f"created {created}")
    updated = _who_when(doc, "_updatedBy", "_updatedAt", now)
    if updated:
        lines.append(f"last changed {updated}")
    return "\n".join(lines)


async def run(ctx: CommandContext, args: Sequence[Token]) -> Reply:
    target = parse_target(args, command="show", usage=HELP["show"].usage)
    found = await resolve(ctx, target)
    return Reply(describe(found, ctx.now()))


COMMAND = Command(
    name="show",
    summary="show one integration's settings (secrets hidden)",
    usage=HELP["show"].usage,
    details=HELP["show"].details,
    examples=HELP["show"].examples,
    handler=run,
    aliases=("info",),
    action="look at {kind}integrations",
)
