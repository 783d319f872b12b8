"""Which messages are commands for the bot: the cheap filter every streamed message goes through.

Rules (contract §5.2, §5.3, §8 gotchas 12–14), in order:
- the bot's own messages, other bots' and webhook messages (`bot` set), system messages (`t`,
  which includes E2E-encrypted `t: "e2e"`), and client-only ephemerals are never commands;
- messages in rooms the bot is not a member of (`__my_messages__` also streams every public
  channel) are not for it;
- an edited message never runs: the stream re-delivers a message on every edit, reaction or
  thread reply, and the first delivery (which has no `editedAt`) is the one that counts. So
  fixing a typo in a command that already ran does not run it again, and an old message edited
  into a command does not run either (send a new message instead);
- the text must be addressed to the bot (prefix, leading mention, or a DM), see
  `commands.parser.extract_invocation`.
Exactly-once across re-deliveries, reconnects and restarts is the runtime's job (a claim in the
state database); this module is pure and synchronous so it stays off the hot path's I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.errors import UsageError
from bot.messages import ChatMessage
from commands.parser import Invocation, extract_invocation


@dataclass(frozen=True)
class Accepted:
    """A message addressed to the bot: its invocation, or the usage error it raised when parsed."""

    message: ChatMessage
    invocation: Invocation | None
    error: UsageError | None = None


class Intake:
    def __init__(self, *, bot_user_id: str, bot_username: str, prefixes: tuple[str, ...]) -> None:
        self.bot_user_id = bot_user_id
        self.bot_username = bot_username
        self.prefixes = prefixes

    def ignores(self, message: ChatMessage) -> bool:
        return (
            message.user_id == self.bot_user_id
            or message.is_bot
            or message.system_type is not None
            or message.is_ephemeral
            or message.room_participant is False
            or message.edited_at is not None
        )

    def accept(self, message: ChatMessage) -> Accepted | None:
        """The message as a command for the bot, or None when it is not one."""
        if self.ignores(message):
            return None
        try:
            invocation = extract_invocation(
                message.text,
                prefixes=self.prefixes,
                bot_username=self.bot_username,
                bot_user_id=self.bot_user_id,
                is_direct=message.room_type == "d",
                mentions=message.mentions,
            )
        except UsageError as exc:
            return Accepted(message, None, exc)
        if invocation is None:
            return None
        return Accepted(message, invocation)
