"""Replies: how integrations are shown, and the one place errors become friendly sentences.

Every text that reaches chat is short enough for a phone, names things the way the admin UI
does, and is mention-safe: user-supplied text goes through `text.quote_name`/`text.safe_text`
(which also keeps it from rendering as a link or formatting), a sentence the bot composed around
such parts (an error's text) through `text.safe_markup`, and the runtime neutralises the whole
reply's mentions once more before sending (defence in depth).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from bot.errors import (
    AmbiguousIntegration,
    AmbiguousReading,
    AuthFailed,
    BotError,
    ClaimTakenOver,
    ConfigError,
    IntegrationNotFound,
    NotUpdatable,
    OutcomeUnknown,
    PermissionDenied,
    RateLimited,
    ServerRejected,
    StateUnavailable,
    Suggestion,
    Unavailable,
    UnknownCommand,
    UpstreamError,
    UsageError,
    UserInputError,
    VerificationFailed,
)
from bot.integrations.similar import Measure, closest, either
from bot.integrations.wording import kind_word, mark
from bot.rocketchat.models import Integration
from bot.text import bullet_list, code, plural, quote_name, safe_markup, safe_text
from commands.reply import Reply

if TYPE_CHECKING:
    from collections.abc import Sequence

    from commands.parser import Invocation, Token
    from commands.registry import Registry


def label(integration: Integration) -> str:
    """`Guggy` (incoming): the name as code (mention-safe) and the type."""
    return f"{quote_name(integration.name)} ({kind_word(integration.type)})"


def only_a_name(command: str, rest: Sequence[Token]) -> Reply | None:
    """The answer to words left after the one name a command takes (`enable`, `quiet`); None when none are."""
    if not rest:
        return None
    extra = " ".join(t.value for t in rest)
    return Reply(
        f"⚠️ `{command}` takes only a name; quote names with spaces. I did not understand: {safe_text(extra)}",
        outcome="usage",
    )


def one_line(integration: Integration, *, with_id: bool = False) -> str:
    ident = f" · {code(integration.id)}" if with_id else ""
    return f"{mark(integration.enabled)} {quote_name(integration.name)} · {kind_word(integration.type)}{ident}"


def _candidates(error: AmbiguousIntegration) -> str:
    lines = [f"{mark(c.enabled)} {quote_name(c.name)} · {kind_word(c.type)} · {code(c.id)}" for c in error.candidates]
    return bullet_list(lines)


def _suggested(suggestion: Suggestion) -> str:
    """`Guggy`, `Guggy` (incoming), `Pager` (incoming, id `…`): as much as tells it apart."""
    if suggestion.with_id:
        return f"{quote_name(suggestion.name)} ({kind_word(suggestion.type)}, id {code(suggestion.id)})"
    if suggestion.with_type:
        return f"{quote_name(suggestion.name)} ({kind_word(suggestion.type)})"
    return quote_name(suggestion.name)


def _command_guess(word: str, registry: Registry) -> str | None:
    """The command (its name) whose name or alias is closest to a mistyped command word."""
    by_word = {w.lower(): c.name for c in registry for w in c.words}
    close = closest([word.lower()], by_word, measure=Measure.WORD, limit=1)
    return by_word[close[0]] if close else None


# The answer when the bot cannot record a command (its state database is unavailable): nothing ran.
# The outcome of a command answered UNRECORDED (the state database could not be reached).
STATE_UNAVAILABLE: Final = "state-unavailable"
UNRECORDED: Final = (
    "⏳ I can't record commands right now, so I did not run this one; nothing was changed. Try again in a minute."
)


# The outcome of a command this process stopped because another took it over (its claim's lease
# ran out while this one was paused): not answered here; the other process answers it.
TAKEN_OVER: Final = "taken-over"


def for_error(error: BotError, *, invocation: Invocation, registry: Registry) -> Reply:
    """The reply for an error raised by a command. Nothing was changed unless it says so."""
    if isinstance(error, UnknownCommand):
        guess = _command_guess(error.word, registry)
        if guess is not None:
            return Reply(
                f"I don't know {quote_name(error.word)}. Did you mean {code(guess)}? Try {code('help')}.",
                outcome="unknown",
            )
        known = ", ".join(c.name for c in registry)
        return Reply(
            f"I don't know {quote_name(error.word)}. Commands: {known}. Try {code('help')}.", outcome="unknown"
        )
    if isinstance(error, UsageError):
        found = registry.find(error.command)
        usage = f"\nUsage: {code(found.usage)}" if found is not None and found.usage not in error.problem else ""
        return Reply(f"⚠️ {safe_markup(error.problem)}{usage}", outcome="usage")
    if isinstance(error, AmbiguousReading):
        names = either([quote_name(name) for name in error.names])
        return Reply(
            f"⚠️ {quote_name(error.query)} can be read as more than one name ({names}), so I changed nothing. "
            f"Put the name you mean in double quotes, or use the id:\n{_candidates(error)}",
            outcome="ambiguous",
        )
    if isinstance(error, AmbiguousIntegration):
        named = f"{plural(len(error.candidates), 'integration')} are named {quote_name(error.query)}"
        command = registry.find(invocation.command) if invocation.command else None
        if command is not None and not command.changes_integrations:
            # A read (`show`, `history`) had nothing to change: ask, don't reassure.
            return Reply(
                f"{named}: which one do you mean? Use the id, or add `incoming`/`outgoing`:\n{_candidates(error)}",
                outcome="ambiguous",
            )
        return Reply(
            f"⚠️ {named}, so I changed nothing. Use the id, or add `incoming`/`outgoing`:\n{_candidates(error)}",
            outcome="ambiguous",
        )
    if isinstance(error, IntegrationNotFound):
        kind = f" {kind_word(error.kind)}" if error.kind else ""
        missing = f"I can't find an{kind} integration named {quote_name(error.query)} that you can see."
        if error.suggestions:
            guesses = either([_suggested(s) for s in error.suggestions])
            return Reply(f"{missing} Did you mean {guesses}?", outcome="not-found")
        return Reply(f"{missing} Try {code('list')} to see the names.", outcome="not-found")
    if isinstance(error, NotUpdatable):
        return Reply(
            f"⚠️ I can't change {quote_name(error.name)} without losing data: {safe_markup(error.reason)}. "
            "Nothing was changed; fix it in Administration → Integrations.",
            outcome="not-updatable",
        )
    if isinstance(error, PermissionDenied):
        if len(error.missing) > 2:
            needs = "one of " + ", ".join(code(p) for p in error.missing)
        else:
            needs = " or ".join(code(p) for p in error.missing) if error.missing else "more rights"
        # With every integration permission listed, the detail would only repeat it.
        detail = f" ({safe_text(error.detail)})" if error.detail and len(error.missing) <= 2 else ""
        # The action is the bot's own phrase, names in it already in code spans (`quote_name`).
        return Reply(f"⛔ You can't {safe_markup(error.action)}: you need {needs}{detail}.", outcome="denied")
    if isinstance(error, UserInputError):
        return Reply(f"⚠️ {safe_markup(str(error))}", outcome="input")
    if isinstance(error, VerificationFailed):
        changed = bullet_list(
            f"{code(field)}: wanted {code(want)}, stored {code(got)}"
            for field, (want, got) in sorted(error.differences.items())
        )
        return Reply(
            "🚨 Rocket.Chat stored something different from what I sent. Please check this integration "
            f"in Administration → Integrations (id {code(error.integration_id)}):\n{changed}",
            outcome="verification-failed",
        )
    if isinstance(error, RateLimited):
        wait = f" Try again in {max(1, round(error.retry_after))} s." if error.retry_after else " Try again soon."
        return Reply(f"⏳ Rocket.Chat is rate-limiting me; nothing was changed.{wait}", outcome="rate-limited")
    if isinstance(error, OutcomeUnknown):
        return Reply(
            f"⏳ Rocket.Chat stopped answering while I was saving {quote_name(error.name)} "
            f"({kind_word(error.kind)}), so I can't tell whether the change was stored. "
            f"Check with {code('show ' + error.name)} in a minute before trying again.",
            outcome="outcome-unknown",
        )
    if isinstance(error, Unavailable | AuthFailed):
        return Reply(
            "⏳ Rocket.Chat is not answering right now; nothing was changed. Try again in a minute.",
            outcome="unavailable",
        )
    if isinstance(error, ServerRejected):
        return Reply(f"⚠️ Rocket.Chat refused: {safe_text(error.error)}. Nothing was changed.", outcome="rejected")
    if isinstance(error, StateUnavailable):
        return Reply(UNRECORDED, outcome=STATE_UNAVAILABLE)
    if isinstance(error, ClaimTakenOver):
        return Reply("", outcome=TAKEN_OVER)
    if isinstance(error, ConfigError):
        return Reply(
            f"⚠️ I'm not set up fully: {safe_markup(str(error))}. Please tell an admin.", outcome="bot-misconfigured"
        )
    if isinstance(error, UpstreamError):
        return Reply("⏳ Rocket.Chat did not do what I asked; nothing was changed.", outcome="upstream")
    return Reply(f"⚠️ {safe_markup(str(error))}", outcome="error")


def crashed(correlation_id: str, *, changes: bool) -> Reply:
    check = " Check the integration with `show` before retrying." if changes else ""
    return Reply(f"💥 Something went wrong on my side (reference {code(correlation_id)}).{check}", outcome="crashed")


def present(value: Any) -> bool:
    return value not in (None, "", [], {})
