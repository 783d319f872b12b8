"""How old a command may be and still run: the rules every path applies (stream, catch-up, recovery).

A command found late (sent while the bot was offline, or left unfinished by a crash) may no
longer be wanted: the incident may be over, someone may have fixed it by hand. So a command older
than `BOT_STALE_COMMAND_AGE` is answered but not run (`stale_reply`), one older than the catch-up
horizon is not even answered, and one a restart could not safely finish says so
(`interrupted_reply`); one a restart finished from the text it had when it ran, its message
edited since, says that (`as_it_ran`). The stream, a catch-up pass and recovery all ask `freshness` the same way.
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime, timedelta
from typing import Final

from bot.rocketchat.messages import ChatMessage
from bot.text import code, human_duration
from commands.reply import Reply

CATCHUP_HORIZON: Final = timedelta(hours=24)


class Freshness(enum.Enum):
    FRESH = "fresh"
    STALE = "stale"
    TOO_OLD = "too-old"


def freshness(sent: datetime, now: datetime, stale_age: timedelta, horizon: timedelta = CATCHUP_HORIZON) -> Freshness:
    age = now - sent
    if age > max(horizon, stale_age):
        return Freshness.TOO_OLD
    if age > stale_age:
        return Freshness.STALE
    return Freshness.FRESH


# How much later than its `ts` a message's `_updatedAt` may be on its first delivery (Rocket.Chat
# stamps both as it stores the message, a few ms apart). A re-delivery after a reaction, a thread
# reply or an edit carries a later one.
FIRST_DELIVERY_SPAN: Final = timedelta(seconds=2)


def first_delivery(message: ChatMessage) -> bool:
    """Whether `message` looks as it did when it was posted: never edited, nothing added since."""
    return message.edited_at is None and message.updated_at - message.ts <= FIRST_DELIVERY_SPAN


def stale_reply(sent: datetime, now: datetime, stale_age: timedelta) -> Reply:
    return Reply(
        f"⌛ I did not run this command: it was sent {human_duration(now - sent)} ago, while I was offline, "
        f"and I only run commands younger than {human_duration(stale_age)} (things may have changed since). "
        "Send it again if it is still needed.",
        outcome="stale",
    )


def interrupted_reply(reason: str, prefix: str) -> Reply:
    return Reply(
        f"⌛ I was restarted while handling this command and did not run it again: {reason}. "
        f"Check the integration with {code(prefix + ' show <name>')} and send the command again if it is still needed.",
        outcome="interrupted",
    )


def as_it_ran(reply: Reply, since: str = "edited") -> Reply:
    """The answer to a command finished after a restart from the text it had when it ran (its
    message was `since` meanwhile: "edited" or "deleted", bot/runtime/recovery.py): it says so first."""
    mark = "🗑️" if since == "deleted" else "✏️"
    note = f"{mark} Your message was {since} after I ran it; this answers what it said then."
    return dataclasses.replace(reply, text=f"{note}\n{reply.text}")
