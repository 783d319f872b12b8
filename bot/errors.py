"""The bot's one error tree.

Handlers and clients raise these; exactly one place (the command dispatcher) turns them into
friendly, mention-safe replies. Foreign exceptions (httpx, websockets, sqlite) are translated
into this tree at the client boundary, so command code never catches a library exception.

    BotError
    ├── ConfigError                 a setting is missing or wrong (one clear line, exit 2)
    │   └── BotLacksPermission      the bot's Rocket.Chat account lacks a permission it needs
    ├── UserInputError              the caller typed something we cannot act on
    │   ├── UnknownCommand
    │   ├── UsageError              wrong arguments for a known command
    │   ├── IntegrationNotFound
    │   ├── AmbiguousIntegration    several integrations match; carries the candidates
    │   │   └── AmbiguousReading    the words typed read as several names, of different integrations
    │   └── NotUpdatable            no lossless update body exists (e.g. outgoing without token)
    ├── PermissionDenied            the caller lacks a Rocket.Chat permission (which one)
    ├── UpstreamError               Rocket.Chat did not do what we asked
    │   ├── AuthFailed              the bot's own credentials are refused (fatal)
    │   ├── RateLimited             429; carries the server's retry-after
    │   ├── ServerRejected          4xx with Rocket.Chat's error text and errorType
    │   │   └── MessageIdTaken      a message id the bot chose is held by someone else's message
    │   └── Unavailable             5xx, timeouts, connection errors (after retries)
    │       └── OutcomeUnknown      a write was sent, and whether it was stored can't be told
    ├── VerificationFailed          a write was stored differently than intended
    └── StateUnavailable            the state database cannot be reached or refused a statement
        └── StateBusy               a row another transaction holds stayed locked past the bound
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class BotError(Exception):
    """Base of every error the bot raises on purpose."""


class ConfigError(BotError):
    """A configuration value is missing or invalid. The message is one line for the operator."""


class BotLacksPermission(ConfigError):
    """The bot's own account lacks a Rocket.Chat permission it needs (an operator must grant it)."""

    def __init__(self, permission: str, purpose: str) -> None:
        self.permission = permission
        self.purpose = purpose
        super().__init__(
            f"the bot's Rocket.Chat account lacks the permission {permission!r}, needed to {purpose}; "
            "give the bot user a role that has it (e.g. admin)"
        )


class UserInputError(BotError):
    """The command cannot be acted on as typed. The message is shown to the caller."""


class UnknownCommand(UserInputError):
    def __init__(self, word: str) -> None:
        self.word = word
        super().__init__(f"unknown command {word!r}")


class EditedSince(UserInputError):
    """A command resumed after a restart whose message was edited meanwhile makes no change it had
    not made before (bot/runtime/recovery.py): its caller changed what they asked for."""

    def __init__(self, integration_id: str) -> None:
        self.integration_id = integration_id
        super().__init__("not changed: the message was edited since, so I make no new change for it")


class UsageError(UserInputError):
    def __init__(self, command: str, problem: str) -> None:
        self.command = command
        self.problem = problem
        super().__init__(f"{command}: {problem}")


@dataclass(frozen=True)
class Candidate:
    """One of several integrations matching a name, as shown to the caller."""

    id: str
    name: str
    type: str
    enabled: bool


@dataclass(frozen=True)
class Suggestion:
    """An integration a "did you mean" names (`bot.integrations.similar`), and what the reply must add to tell
    it apart from a visible twin: its type, its id."""

    id: str
    name: str
    type: str
    with_type: bool = False
    with_id: bool = False


class IntegrationNotFound(UserInputError):
    """No integration the caller can see has that name; `suggestions` are the closest that do."""

    def __init__(self, query: str, kind: str | None = None, suggestions: Sequence[Suggestion] = ()) -> None:
        self.query = query
        self.kind = kind
        self.suggestions = tuple(suggestions)
        super().__init__(f"no integration named {query!r}")


class AmbiguousIntegration(UserInputError):
    def __init__(self, query: str, candidates: Sequence[Candidate]) -> None:
        self.query = query
        self.candidates = tuple(candidates)
        super().__init__(f"{len(self.candidates)} integrations are named {query!r}")


class AmbiguousReading(AmbiguousIntegration):
    """The words typed (`query`: `Grafana spamming the channel`) read as more than one name of an
    integration (`names`: `Grafana spamming`, `Grafana`), of different integrations."""

    def __init__(self, query: str, names: Sequence[str], candidates: Sequence[Candidate]) -> None:
        super().__init__(query, candidates)
        self.names = tuple(names)


class NotUpdatable(UserInputError):
    """The stored integration cannot be re-sent without inventing or dropping data; nothing was written."""

    def __init__(self, integration_id: str, name: str, reason: str) -> None:
        self.integration_id = integration_id
        self.name = name
        self.reason = reason
        super().__init__(f"integration {name!r} cannot be changed safely: {reason}")


class PermissionDenied(BotError):
    """The caller may not do this. `missing` names the permission(s) Rocket.Chat would require."""

    def __init__(self, action: str, missing: Sequence[str], *, detail: str | None = None) -> None:
        self.action = action
        self.missing = tuple(missing)
        self.detail = detail
        super().__init__(f"{action}: missing {' or '.join(self.missing)}")


class UpstreamError(BotError):
    """Rocket.Chat did not do what was asked."""

    def __init__(self, endpoint: str, message: str) -> None:
        self.endpoint = endpoint
        super().__init__(message)


class AuthFailed(UpstreamError):
    """The bot's own credentials were refused (401). Retrying does not help."""


class RateLimited(UpstreamError):
    def __init__(self, endpoint: str, retry_after: float | None) -> None:
        self.retry_after = retry_after
        wait = f"; retry in {retry_after:.0f}s" if retry_after is not None else ""
        super().__init__(endpoint, f"{endpoint}: rate limited{wait}")


class ServerRejected(UpstreamError):
    """A 4xx answer. `error_type` is Rocket.Chat's `errorType` when it sent one."""

    def __init__(self, endpoint: str, status: int, error: str, error_type: str | None = None) -> None:
        self.status = status
        self.error = error
        self.error_type = error_type
        super().__init__(endpoint, f"{endpoint}: HTTP {status}: {error}")


class MessageIdTaken(ServerRejected):
    """`error-duplicate-message` for an id the bot chose, and the stored message with that id is
    not the bot's own one in that room (bot/rocketchat/message_ids.py): someone else posted it first."""

    def __init__(self, endpoint: str, message_id: str) -> None:
        self.message_id = message_id
        held = f"message id {message_id} is held by a message the bot did not post"
        super().__init__(endpoint, 400, held, "error-duplicate-message")


class Unavailable(UpstreamError):
    """5xx, timeout or connection failure, after the bounded retries."""


class OutcomeUnknown(Unavailable):
    """A write was sent, its answer was lost, and Rocket.Chat stayed silent for as long as the bot
    kept looking (`integrations.SETTLE_SECONDS`): the change may or may not have been stored.
    Never reported as "nothing was changed"."""

    def __init__(self, name: str, kind: str | None) -> None:
        self.name = name
        self.kind = kind
        super().__init__("integrations.update", f"the outcome of the update of {name!r} is unknown")


class VerificationFailed(BotError):
    """The stored document after a write differs from what was intended.

    `differences` maps a field name to `(intended, stored)` as display strings (secrets masked).
    """

    def __init__(self, integration_id: str, differences: dict[str, tuple[str, str]]) -> None:
        self.integration_id = integration_id
        self.differences = dict(differences)
        super().__init__(f"integration {integration_id}: stored result differs in {', '.join(sorted(differences))}")


class StateUnavailable(BotError):
    """The state database (a shared PostgreSQL, `BOT_STATE_URL`) cannot be reached, or failed a
    statement: nothing that needs a record (a claim, a write intent, an audit row) may go on.
    The message names the database's host and database, never its password."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"state database {where} unavailable: {problem}")


class StateBusy(StateUnavailable):
    """A statement gave up waiting for a row another transaction holds locked (PostgreSQL's
    `lock_timeout`, `bot/state/postgres.py`): the database answers, but that transaction stays
    open, typically another replica's stopped between the statements of its batch (SIGSTOP, a
    frozen VM). What the statement was for did not happen, as with `StateUnavailable` (its
    callers handle it so), but the database is not down: no readiness lost, no outage reported."""


class ClaimTakenOver(BotError):
    """This process no longer holds the command's claim: another took it over when its lease ran
    out (this one was paused, or cut off from the database, for longer than the lease). That one
    runs and answers the command; this one stops before writing anything."""

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        super().__init__(f"command {message_id} was taken over by another process")
