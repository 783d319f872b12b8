"""One audit row as one line of chat: for `history`, and for the audit room (`BOT_AUDIT_ROOM`).

Only names of fields are shown for edits, never values (a value may be a token, a webhook URL
or a script); user-supplied text (names, reasons, usernames) is echoed mention-safe.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from bot.integrations.documents import changed_fields
from bot.integrations.wording import kind_word
from bot.normalize import name_key
from bot.state.store import AuditRecord
from bot.text import ago, human_until, quote_name, safe_text, single_line, truncate

# action -> (mark, verb phrase with {label})
_PHRASES: Final[dict[str, tuple[str, str]]] = {
    "disable": ("🔴", "disabled {label}"),
    "enable": ("🟢", "enabled {label}"),
    "extend": ("⏰", "extended the disable of {label}"),
    "retime": ("⏰", "re-timed the disable of {label}"),
    "keep-disabled": ("🔴", "made the disable of {label} permanent"),
    "re-enable": ("🟢", "turned {label} back on"),
    "re-enable-skipped": ("⚠️", "left {label} as it was (changed by someone else after the timed disable)"),
    "re-enable-failed": ("⚠️", "could not turn {label} back on"),
    "undo": ("↩️", "undid a change of {label}"),
    "set": ("✏️", "changed {fields}{label}"),
}
REASON_LIMIT: Final = 120
# How many members of a bulk disable one history line names.
GROUP_NAMES: Final = 8


def label(record: AuditRecord) -> str:
    return f"{quote_name(record.integration_name)} ({kind_word(record.integration_type)})"


def _fields(record: AuditRecord) -> str:
    if record.before is None or record.after is None:
        return ""
    names = sorted(changed_fields(record.before, record.after))
    if not names:
        return ""
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f"{safe_text(shown)} of "


def sentence(record: AuditRecord, *, now: datetime, actor: bool = True, named: str | None = None) -> str:
    """`alice disabled `Guggy` (incoming) until 14:35 UTC, in 20 min — flapping`; `named` stands
    for the integration's label (a bulk disable's members: `2 integrations in #alerts (…)`)."""
    unknown = safe_text(record.action).replace("{", "(").replace("}", ")")
    _mark, phrase = _PHRASES.get(record.action, ("•", f"{unknown} {{label}}"))
    text = phrase.format(label=named if named is not None else label(record), fields=_fields(record))
    if record.until is not None and record.action in ("disable", "extend", "retime"):
        text += f" {human_until(record.until, now)}"
    if actor:
        text = f"{safe_text(record.actor_username)} {text}"
    if record.reason:
        text += f" — {safe_text(truncate(single_line(record.reason), REASON_LIMIT))}"
    return text


def history_line(record: AuditRecord, *, now: datetime, where: str | None) -> str:
    """`5 min ago · alice disabled … — flapping · in #ops`."""
    place = f" · {where}" if where else ""
    return f"{ago(record.at, now)} · {sentence(record, now=now)}{place}"


def group_history_line(records: list[AuditRecord], selector: str, *, now: datetime, where: str | None) -> str:
    """`5 min ago · alice disabled 2 integrations in #alerts (`A` (incoming), `B` (outgoing)) until …`:
    the same action on the members of one bulk disable, as one line (`records` newest first)."""
    ordered = sorted(records, key=lambda record: (name_key(record.integration_name), record.integration_id))
    shown = ", ".join(label(record) for record in ordered[:GROUP_NAMES])
    more = f" and {len(records) - GROUP_NAMES} more" if len(records) > GROUP_NAMES else ""
    count = f"{len(records)} integration{'s' if len(records) != 1 else ''}"
    place = f" · {where}" if where else ""
    first = records[0]
    return f"{ago(first.at, now)} · {sentence(first, now=now, named=f'{count} {selector} ({shown}{more})')}{place}"


def audit_room_line(record: AuditRecord, *, now: datetime, where: str | None) -> str:
    """`🔴 alice disabled `Guggy` (incoming) … · in #ops · id `abc``: one line per change."""
    mark, _phrase = _PHRASES.get(record.action, ("•", ""))
    place = f" · {where}" if where else ""
    return f"{mark} {sentence(record, now=now)}{place} · id {quote_name(record.integration_id)}"
