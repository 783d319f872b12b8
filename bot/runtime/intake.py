"""Which messages are commands for the bot, and whose commands it ignores.

Rules (contract §5.2, §5.3, §8 gotchas 12–14, 24, 25), in order:
- the bot's own messages, other bots' and webhook messages (`bot` set), system messages (`t`,
  which includes E2E-encrypted `t: "e2e"`), and client-only ephemerals are never commands;
- messages in rooms the bot is not a member of (`__my_messages__` also streams every public
  channel) are not for it;
- an edited message never runs: the stream re-delivers a message on every edit, reaction or
  thread reply, and the first delivery (which has no `editedAt`) is the one that counts. So
  fixing a typo in a command that already ran does not run it again, and an old message edited
  into a command does not run either (send a new message instead);
- the text must be addressed to the bot (prefix, leading mention, or a DM), see
  `commands.parser.extract_invocation`. Without a prefix only in a DM whose only other member is
  the author (`bot.runtime.direct_rooms`): in a group DM (`t: "d"` with three or more members) people
  talk to each other, and "disable Guggy, right alice?" is not a command there. A bare `yes` and
  the replies that suggest it (`Invocation.is_direct`) follow the same rule.
Exactly-once across re-deliveries, reconnects and restarts is the runtime's job (a claim in the
state database); `accept` is pure and synchronous so it stays off the hot path's I/O. The one
lookup it may need, a new DM's members, is made beforehand by `prepare` (once per DM room).

Other bot accounts: Rocket.Chat marks only webhook messages with `bot` (gotcha 24); an account of
type `bot` writes ordinary messages. Its commands are ignored (`ignored_author`: loops, automation
nobody approved) unless it is one BOT_ALLOWED_BOTS lists; a listed bot still goes through the
rights checks like anyone. That needs the author's account (`users.info`), which only the command's
rights check reads, so the runtime asks after the claim. Accounts are matched by user id, never by
username: a username can be changed, and an account that takes a listed bot's old name must not
take its exemption with it (bot/runtime/allowed_bots.py resolves the listed names to ids when the
bot starts).

Only the account's `type` says it is a bot, never the `bot` role. Rocket.Chat sets `type` when it
creates the account (`user` for people, `bot` e.g. for rocket.cat, `app` for Apps) and no API
changes it (`users.create`/`users.update` do not take it). The `bot` role, though, is handed out
by the server itself: 7.x/8.x give it to the post-as user of an incoming webhook on every add or
update (contract §2.4.3 step 8, gotcha 21), and anyone who may manage their own incoming webhooks
may name any user there (through the bot or in Rocket.Chat). Counted, the role would let one user
silence another's commands, an admin's in the middle of an incident. So nothing anyone can do in
Rocket.Chat makes the bot ignore a person: an account of type `user` given the `bot` role (also
one made by hand as a bot that way) is obeyed like anyone, within its rights. What keeps loops
away stays: the bot never obeys its own messages, and webhook posts (`bot` set) are never
commands.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.errors import UsageError
from bot.integrations.authz import CallerRights
from bot.rocketchat.messages import ChatMessage
from bot.runtime.direct_rooms import DirectRooms
from commands.parser import Invocation, extract_invocation

BOT_TYPE = "bot"  # the account `type` of a bot (`users.info`); the `bot` role does not count


@dataclass(frozen=True)
class Accepted:
    """A message addressed to the bot: its invocation, or the usage error it raised when parsed."""

    message: ChatMessage
    invocation: Invocation | None
    error: UsageError | None = None


class Intake:
    def __init__(
        self,
        *,
        bot_user_id: str,
        bot_username: str,
        prefixes: tuple[str, ...],
        direct_rooms: DirectRooms,
        allowed_bot_ids: frozenset[str] = frozenset(),
    ) -> None:
        self.bot_user_id = bot_user_id
        self.bot_username = bot_username
        self.prefixes = prefixes
        self.direct_rooms = direct_rooms
        self.allowed_bot_ids = allowed_bot_ids  # user ids (`AllowedBots.ids`)

    def ignores(self, message: ChatMessage) -> bool:
        return (
            message.user_id == self.bot_user_id
            or message.is_bot
            or message.system_type is not None
            or message.is_ephemeral
            or message.room_participant is False
            or message.edited_at is not None
        )

    async def prepare(self, messages: Iterable[ChatMessage]) -> None:
        """Learn the members of the DMs among these messages' rooms that `accept` does not know yet
        (nothing to do for other rooms). Raises `UpstreamError` when a lookup failed; `accept`
        then treats that DM as a group DM (the prefix is needed)."""
        await self.direct_rooms.learn(m.room_id for m in messages if m.room_type == "d" and not self.ignores(m))

    def alone_with_bot(self, message: ChatMessage) -> bool:
        """Whether the message is in a DM whose members are its author and the bot, nobody else."""
        if message.room_type != "d":
            return False
        room = self.direct_rooms.get(message.room_id)
        return room is not None and room.only(message.user_id, message.username, self.bot_user_id, self.bot_username)

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
                is_direct=self.alone_with_bot(message),
                mentions=message.mentions,
            )
        except UsageError as exc:
            return Accepted(message, None, exc)
        if invocation is None:
            return None
        return Accepted(message, invocation)

    def ignored_author(self, author: CallerRights) -> str | None:
        """Why this author's commands are ignored (another account of type bot whose id is not
        among the allowed ones), or None when they may run (subject to the author's rights). The
        id, not the username: whoever holds a listed name now is not the account that was listed.
        The `bot` role is not looked at: Rocket.Chat gives it to people (a webhook's post-as user)."""
        if author.user_id == self.bot_user_id or author.user_id in self.allowed_bot_ids:
            return None
        if author.user_type == BOT_TYPE:
            return "an account of type bot"
        return None
