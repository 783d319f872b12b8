"""BOT_ALLOWED_BOTS as accounts: the user ids of the other bot accounts whose commands run.

Theory of operation
-------------------
An operator lists bot accounts by username (or by `id:<user id>`). A username is not an account:
in Rocket.Chat a user may change it (where the server allows) and an admin always can, and a
freed name can be taken by any other account. Matched by name, the exemption would pass to
whoever holds the name now, e.g. another bot renamed to `ci-bot` after the real one was renamed
or deleted. So the names are resolved once, when the bot starts (`users.info?username=`), to the
ids of the accounts that hold them then, and authors are matched by id (`Intake.ignored_author`):

- the account resolved keeps its exemption if it is renamed later (its id does not change);
- an account renamed to a listed name after the start is not that account, and stays ignored;
- a listed name that names no account at the start allows nobody until the next start (a bot
  account created later is allowed once the bot restarts, as after any change of its settings):
  allowing "whoever takes the name first" is exactly what this avoids. It is logged at the start
  (`bot.allowed_bot_missing`) and reported by `integrations-bot check`;
- an `id:` entry is the account itself, whatever its name: the choice of an operator who does not
  want a restart to resolve a name again. It is checked too (a mistyped id allows nobody).

A lookup the server could not answer raises (`Unavailable`, `RateLimited`): the bot's start
retries it with its login, rather than starting with a list that silently allows nobody. Each
replica resolves the list for itself when it starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bot.errors import ServerRejected
from bot.rocketchat.models import UserInfo
from bot.rocketchat.rest import RestClient

NO_SUCH_USER = "no such user"


@dataclass(frozen=True)
class AllowedBots:
    """`ids`: the accounts whose commands run. `names`: each listed username (lower-cased) and the
    id of the account that held it when resolved. `missing`: each entry that allows nobody (a
    username, or `id:<user id>`) and why."""

    ids: frozenset[str] = frozenset()
    names: Mapping[str, str] = field(default_factory=dict)
    missing: Mapping[str, str] = field(default_factory=dict)


async def _lookup(rest: RestClient, *, username: str | None = None, user_id: str | None = None) -> UserInfo | str:
    """The account, or why there is none to allow (`NO_SUCH_USER`, or the server's refusal)."""
    try:
        return await rest.users_info(username=username, user_id=user_id)
    except ServerRejected as exc:
        # "User not found." (and "Invalid search query.") come without an errorType (contract §3.3).
        if exc.status == 400 and exc.error_type in (None, "error-invalid-user"):
            return NO_SUCH_USER
        return f"users.info refused: {exc.error}"


async def resolve_allowed_bots(rest: RestClient, *, names: Iterable[str], ids: Iterable[str]) -> AllowedBots:
    """The accounts these usernames and ids name now (`Settings.allowed_bot_names`, `allowed_bot_ids`)."""
    allowed: set[str] = set()
    resolved: dict[str, str] = {}
    missing: dict[str, str] = {}
    for name in sorted(names):
        found = await _lookup(rest, username=name)
        if isinstance(found, str):
            missing[name] = found
        else:
            resolved[name] = found.id
            allowed.add(found.id)
    for user_id in sorted(ids):
        found = await _lookup(rest, user_id=user_id)
        if isinstance(found, str):
            missing[f"id:{user_id}"] = found
        else:
            allowed.add(found.id)
    return AllowedBots(frozenset(allowed), resolved, missing)
