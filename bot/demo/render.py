"""How the demo chat shows things in a terminal. Pure functions from documents to text lines.

A message is one or more lines led by its room, `[#general] alice: text`. A thread reply is
marked with `↳` after the room; continuation lines, attachments (with their buttons, which a
terminal cannot click, so the line says what to type instead) and reactions are indented under
the text, so the eye can follow a transcript by its left edge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

THREAD_MARK: Final = "↳"
Change = Literal["new", "edited", "updated"]


@dataclass(frozen=True)
class RoomRef:
    """A room as the demo addresses it. `peer` is the other user of a direct-message room."""

    id: str
    name: str
    kind: str  # "c", "p" or "d"
    peer: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "d":
            return f"@{self.peer or self.name}"
        return f"#{self.name}"


def prompt(username: str, room: RoomRef, in_thread: bool) -> str:
    thread = f" {THREAD_MARK} thread" if in_thread else ""
    return f"{username} [{room.label}{thread}]> "


def message_signature(message: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a reader would see change. Thread counters and read receipts are left out on purpose:
    they re-deliver a message without changing what it says."""
    return (
        message.get("msg"),
        message.get("editedAt"),
        _freeze(message.get("attachments")),
        _freeze(message.get("reactions")),
        message.get("t"),
    )


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def author(message: Mapping[str, Any]) -> str:
    user = message.get("u")
    username = str(user.get("username")) if isinstance(user, Mapping) and user.get("username") else "?"
    alias = message.get("alias")
    if message.get("bot") and isinstance(alias, str) and alias:
        return f"{alias} (integration)"
    return username


def render_message(message: Mapping[str, Any], room: RoomRef, change: Change = "new") -> list[str]:
    """Terminal lines for one message (or one change of it)."""
    head = f"[{room.label}] "
    if message.get("tmid"):
        head += f"{THREAD_MARK} "
    indent = " " * len(head) + "  "
    text = str(message.get("msg") or "")
    system = message.get("t")
    if isinstance(system, str) and system:
        first = f"* {author(message)} ({system})" + (f": {text}" if text else "")
        body = first.split("\n")
    else:
        body = f"{author(message)}: {text}".split("\n")
    if change == "edited":
        body[-1] += " (edited)"
    lines = [head + body[0], *(indent + line for line in body[1:])]
    lines.extend(indent + line for line in _attachment_lines(message.get("attachments")))
    reactions = _reaction_line(message.get("reactions"))
    if reactions:
        lines.append(indent + reactions)
    return lines


def _attachment_lines(attachments: Any) -> list[str]:
    if not isinstance(attachments, list):
        return []
    lines: list[str] = []
    for attachment in attachments:
        if not isinstance(attachment, Mapping):
            continue
        for key in ("title", "text"):
            value = attachment.get(key)
            if isinstance(value, str) and value:
                lines.extend(f"│ {line}" for line in value.split("\n"))
        for field in attachment.get("fields") or []:
            if isinstance(field, Mapping):
                lines.append(f"│ {field.get('title', '')}: {field.get('value', '')}")
        for action in attachment.get("actions") or []:
            if isinstance(action, Mapping) and action.get("type", "button") == "button":
                target = action.get("msg")
                what = f"type: {target}" if isinstance(target, str) and target else str(action.get("url") or "")
                lines.append(f"│ [{action.get('text', 'button')}] → {what}".rstrip(" →"))
    return lines


def _reaction_line(reactions: Any) -> str:
    if not isinstance(reactions, Mapping) or not reactions:
        return ""
    parts = []
    for emoji, data in reactions.items():
        users = data.get("usernames") if isinstance(data, Mapping) else None
        who = ", ".join(str(u) for u in users) if isinstance(users, list) else ""
        parts.append(f"{emoji} {who}".strip())
    return "reactions: " + "; ".join(parts)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    body = [list(map(str, row)) for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(headers)]
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.extend("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in body)
    return lines


def integrations_table(documents: Iterable[Mapping[str, Any]]) -> list[str]:
    kinds = {"webhook-incoming": "incoming", "webhook-outgoing": "outgoing"}
    rows = sorted(
        (
            str(doc.get("name", "")),
            kinds.get(str(doc.get("type")), str(doc.get("type"))),
            "yes" if doc.get("enabled") is True else "no",
            str(doc.get("_id", "")),
        )
        for doc in documents
    )
    if not rows:
        return ["  (no integrations)"]
    return table(("name", "type", "enabled", "id"), rows)


def banner(
    *,
    server_url: str,
    state_dir: str,
    bot_log: str,
    username: str,
    room: RoomRef,
    bot_username: str,
    help_lines: Sequence[str],
) -> list[str]:
    return [
        "integrations-bot demo: a sandbox Rocket.Chat with the real bot running against it.",
        f"  server     {server_url}",
        f"  bot log    {bot_log}",
        f"  state dir  {state_dir}",
        f"You are {username} in {room.label}. Type a message and press Enter to send it (as {username},",
        f"through Rocket.Chat's REST API); {bot_username}'s answers and everything else said in the room",
        "show up here. Lines starting with ':' are for the demo itself:",
        *help_lines,
        "Try:",
        "  !integration list",
        "  /integration disable Guggy             (two are named Guggy: it asks which)",
        "  /integration disable incoming Guggy",
        "  :user alice    then the same           (alice may not: the bot says why)",
        "  :room alerts   then   !integration noisy   (Grafana is flooding it: disable it, then :flood Grafana)",
        "  :dm            then   help",
    ]
