"""How a field change reads in chat: `alias: `guggy` → `Guggy bot``, secrets never shown (in
`set`'s preview and answer, `undo`, and the notice of a timed re-enable left alone).

Only the fields that change are listed. Values are shown the way `show` shows them: webhook URLs
and avatars cut to their host (they often carry a secret), a token only as set/changed, lists as
their entries; everything in mention-safe code spans that keep every character (`text.verbatim`),
so a value copied from a preview, an applied change or an undo can be typed back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bot.integrations.documents import hide_rooms
from bot.integrations.fields import BY_KEY, Change, is_unset
from bot.integrations.service import display
from bot.text import code, neutralize_mentions, safe_text, single_line, verbatim

_MASKED_AS_URL = frozenset({"urls", "avatar"})
# Shown by presence only, as `show` does: a script often holds a key or a password.
_SHOWN_BY_PRESENCE = frozenset({"script"})


def value_text(key: str, value: Any) -> str:
    if is_unset(value):
        return "(none)"
    if key in _MASKED_AS_URL:
        values = value if isinstance(value, list) else [value]
        return ", ".join(code(display(key, [v]) if key == "urls" else display(key, v)) for v in values)
    if isinstance(value, bool):
        return code("true" if value else "false")
    if isinstance(value, list):
        return ", ".join(verbatim(str(v)) for v in value)
    return verbatim(str(value))


def change_line(change: Change) -> str:
    """One line: the key and the reason (`because`) flattened, the values shown exactly; a token or
    a script only as there or not (undo's lists name fields no command sets, the script among them)."""
    key = neutralize_mentions(single_line(change.key))
    if change.secret or change.key in _SHOWN_BY_PRESENCE:
        had, has = not is_unset(change.before), not is_unset(change.after)
        after = ("changed (not shown)" if had else "set (not shown)") if has else "none"
        return f"{key}: {'set' if had else 'none'} → {after}"
    line = f"{key}: {value_text(change.key, change.before)} → {value_text(change.key, change.after)}"
    return f"{line} ({safe_text(single_line(change.because))})" if change.because else line


def change_lines(changes: Iterable[Change]) -> str:
    """One `• ` line per change. Not `bullet_list`: its `single_line` would collapse the spaces and
    drop the invisible characters `verbatim` keeps; each change line is one line already (values
    in code spans or `verbatim`, the key and a reason flattened), and mention-safe."""
    return "\n".join(f"• {change_line(change)}" for change in changes)


def changes_between(before: Mapping[str, Any], updates: Mapping[str, Any]) -> list[Change]:
    """The changes `updates` make to the document `before`, in the catalogue's order."""
    order = {key: index for index, key in enumerate(BY_KEY)}
    keys = sorted(updates, key=lambda key: order.get(key, len(order)))
    return [Change(key, before.get(key), updates[key]) for key in keys]


def room_safe_change_lines(
    before: Mapping[str, Any], after: Mapping[str, Any], keys: Iterable[str], sees: Callable[[str], bool]
) -> str:
    """`change_lines` for the fields `keys` from `before` to `after`, every room `sees` refuses
    hidden (`bot.integrations.documents.hide_rooms`)."""
    shown_before = {key: hide_rooms(key, before.get(key), sees) for key in keys}
    shown_after = {key: hide_rooms(key, after.get(key), sees) for key in shown_before}
    return change_lines(changes_between(shown_before, shown_after))
