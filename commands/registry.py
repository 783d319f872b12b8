"""One table of commands, and the dispatcher that runs parse → authorize → execute → reply.

Each command module declares one `Command`: its name and aliases, the help text, what the
caller needs to see it (`Requirement`), whether it changes integrations, and its handler.
The dispatcher is the only place that turns errors into replies (`commands.replies`), binds the
log context (correlation id, room, caller, command) and records one structured event per command,
so handlers stay short: they raise `BotError`s and return a `Reply`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from bot import logs
from bot.errors import BotError, PermissionDenied, StateUnavailable, UnknownCommand
from commands import replies
from commands.reply import Reply

if TYPE_CHECKING:
    from bot.integrations.authz import CallerRights
    from bot.rocketchat.messages import ChatMessage
    from commands.args import Target
    from commands.context import Services
    from commands.followups import FollowUp
    from commands.parser import Invocation, Token

log = logs.get_logger("integrations_bot.commands")

# How long a command reading the audit waits for other replicas' book-keeping of answers already
# given (`CommandContext.answers_recorded`; it usually takes milliseconds), and how often it looks.
OTHERS_RECORDED: Final = 2.0
OTHERS_POLL: Final = 0.02


class Requirement(enum.Enum):
    """What a caller needs for a command to be offered to them in `help`.

    The actual permission check happens per integration inside the command (Rocket.Chat's rules
    depend on the integration's type and creator); this only decides visibility."""

    NONE = "none"
    ANY_INTEGRATION_RIGHT = "any-integration-right"


@dataclass
class CommandContext:
    message: ChatMessage
    invocation: Invocation
    services: Services
    correlation_id: str
    # The command being run (None for an unknown command word).
    command: Command | None = None
    # Read the caller's rights from Rocket.Chat for this command rather than from the cache: set
    # for commands that change integrations or the bot (a revoked right must be revoked at once).
    fresh_rights: bool = False
    _rights: CallerRights | None = field(default=None, repr=False)
    deferred: list[FollowUp] = field(default_factory=list, repr=False)
    # Resumed after a restart from what it said when it ran, its message "edited" or "deleted"
    # since (bot/runtime/recovery.py): it reports what it did then and makes no new change.
    as_it_ran: str | None = None

    async def rights(self) -> CallerRights:
        """The caller's effective rights, fetched once per command (cached across commands,
        except for commands that change integrations or the bot, see `fresh_rights`). A deactivated
        account may do nothing (a command of theirs can still turn up, e.g. at catch-up)."""
        if self._rights is None:
            self._rights = await self.services.rights.get(self.message.user_id, fresh=self.fresh_rights)
        if not self._rights.active:
            raise PermissionDenied("use me", (), detail="your Rocket.Chat account is deactivated")
        return self._rights

    def now(self) -> datetime:
        return self.services.clock()

    def defer(self, integration_id: str, work: Callable[[], Awaitable[object]]) -> None:
        """Run `work` (book-keeping about that integration) once the answer is on its way
        instead of before it; commands reading its results wait for it (commands/followups.py)."""
        self.deferred.append(self.services.followups.register(integration_id, work))

    async def answers_recorded(self) -> None:
        """Wait for the book-keeping of every answer already given: this process's (`Followups`),
        then, for up to `OTHERS_RECORDED` seconds, that of other replicas (their commands' audit
        rows, looked for in the shared store), so whoever saw an answer through one replica sees
        its audit row through any (`history`, `undo`: the caller's last change). A store that
        cannot be asked is not waited for: the reads that follow tell that error themselves."""
        await self.services.followups.settled()
        state = self.services.state
        loop = asyncio.get_running_loop()
        deadline = loop.time() + OTHERS_RECORDED
        try:
            waiting = await state.unrecorded_answers(self.now(), besides=self.message.id)
            while waiting and loop.time() < deadline:
                await asyncio.sleep(OTHERS_POLL)
                waiting &= await state.unrecorded_answers(self.now(), besides=self.message.id)
        except StateUnavailable:
            return


Handler = Callable[[CommandContext, "Sequence[Token]"], Awaitable[Reply]]


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    usage: str
    handler: Handler
    examples: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    details: str = ""
    requires: Requirement = Requirement.ANY_INTEGRATION_RIGHT
    changes_integrations: bool = False
    # Changes what the bot does, though no integration (`quiet`): its caller's rights are read
    # for it, as for a change (`reads_rights_fresh`), without a change's place in the lanes.
    changes_bot: bool = False
    # What a caller without the rights is refused, "You can't <action>"; `{kind}` is "incoming "
    # or "outgoing " when the command named one, else empty (commands/targets.py).
    action: str = "look up {kind}integrations"
    # The integration the command looks up first, from its arguments (a `UsageError` when they
    # name none): read while the runtime reads the caller's rights (`commands.targets.begin_prefetch`).
    first_lookup: Callable[[Sequence[Token]], Target] | None = None

    @property
    def reads_rights_fresh(self) -> bool:
        """Whether its caller's rights are read from Rocket.Chat for it, not from the cache: a
        right revoked (or an account deactivated, which is never announced) counts at once."""
        return self.changes_integrations or self.changes_bot

    def refused(self, kind: str | None = None) -> str:
        return self.action.format(kind=f"{kind} " if kind else "")

    @property
    def words(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


class Registry:
    """The table of commands, looked up by name or alias (case-insensitive)."""

    def __init__(self, commands: Iterable[Command]) -> None:
        self._commands: list[Command] = []
        self._by_word: dict[str, Command] = {}
        for command in commands:
            self.add(command)

    def add(self, command: Command) -> None:
        for word in command.words:
            if word.lower() in self._by_word:
                raise ValueError(f"command word {word!r} is declared twice")
        self._commands.append(command)
        for word in command.words:
            self._by_word[word.lower()] = command

    def find(self, word: str) -> Command | None:
        return self._by_word.get(word.lower())

    def __iter__(self) -> Any:
        return iter(self._commands)

    def words(self) -> list[str]:
        return sorted(self._by_word)


def new_correlation_id() -> str:
    return secrets.token_hex(4)


class Dispatcher:
    """Runs one invocation and always produces exactly one reply."""

    def __init__(self, registry: Registry, services: Services) -> None:
        self.registry = registry
        self.services = services
        self.observers: list[Callable[[str, str, float], None]] = []  # (command, outcome, seconds)

    async def dispatch(
        self,
        message: ChatMessage,
        invocation: Invocation,
        *,
        rights: CallerRights | None = None,
        as_it_ran: str | None = None,
    ) -> Reply:
        """Run the invocation; `rights` are the caller's, when the runtime already read them
        (read fresh if the command changes integrations or the bot, `Command.reads_rights_fresh`);
        `as_it_ran`: resumed from what it said when it ran (`CommandContext.as_it_ran`)."""
        correlation_id = new_correlation_id()
        command = self.registry.find(invocation.command) if invocation.command else self.registry.find("help")
        name = command.name if command is not None else "unknown"
        logs.bind(
            correlation_id=correlation_id,
            room_id=message.room_id,
            user_id=message.user_id,
            username=message.username,
            command=name,
            message_id=message.id,
        )
        started = time.monotonic()
        fresh = command is not None and command.reads_rights_fresh
        context = CommandContext(
            message,
            invocation,
            self.services,
            correlation_id,
            command,
            fresh_rights=fresh,
            _rights=rights,
            as_it_ran=as_it_ran,
        )
        try:
            if command is None:
                raise UnknownCommand(invocation.command)
            reply = await command.handler(context, invocation.args)
        except BotError as exc:
            reply = replies.for_error(exc, invocation=invocation, registry=self.registry)
        except Exception:
            log.exception("command crashed")
            reply = replies.crashed(correlation_id, changes=command is not None and command.changes_integrations)
        elapsed = time.monotonic() - started
        logs.after_answer(log, "command", outcome=reply.outcome, seconds=round(elapsed, 4))
        for observer in self.observers:
            observer(name, reply.outcome, elapsed)
        logs.clear()
        if context.deferred:  # also after an error: what was deferred is about a change that happened
            reply = dataclasses.replace(reply, afterwards=tuple(context.deferred))
        return reply
