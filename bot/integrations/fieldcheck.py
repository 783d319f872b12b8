"""Does what a planned change names exist on the server? (the I/O half of `bot.integrations.fields`)

Rocket.Chat resolves a `#x` channel entry to a room whose `_id` or `name` is `x`, an `@x` entry to
a user whose `_id` or `username` is `x` (contract §2.4.3 step 6), and the post-as `username` to a
user with exactly that username (§2.4.3 step 7, §2.4.5 step 4). The bot asks the same questions
through REST with its own account before anything is written:

* rooms: `rooms.info` by name, then by id. Only `error-room-not-found` means "no such room"; a
  room the bot may not open (`not-allowed`) or an archived one exists, and Rocket.Chat accepts
  it as a channel;
* users: `users.info` by username, then (for `@x`) by id; a 400 without an errorType is
  "User not found." (§3.3).

Any other answer (the server is down, a rejection we cannot read) propagates as the bot's usual
`UpstreamError`, so a check that could not be made never passes.
"""

from __future__ import annotations

from collections.abc import Collection

from bot.errors import ServerRejected
from bot.integrations.fields import Plan, Problem, Reference, refusal, rooms_hint, shown
from bot.rocketchat.models import UserInfo
from bot.rocketchat.rest import RestClient

_ROOM_EXISTS_ANYWAY = frozenset({"not-allowed", "Not Allowed", "error-room-archived"})


async def _room_exists(rest: RestClient, ident: str) -> bool:
    for lookup in ({"room_name": ident}, {"room_id": ident}):
        try:
            await rest.rooms_info(**lookup)
        except ServerRejected as exc:
            if exc.error_type == "error-room-not-found":
                continue
            if exc.error_type in _ROOM_EXISTS_ANYWAY or exc.error in _ROOM_EXISTS_ANYWAY:
                return True
            raise
        return True
    return False


async def _user(rest: RestClient, *, username: str | None = None, user_id: str | None = None) -> UserInfo | None:
    try:
        return await rest.users_info(username=username, user_id=user_id)
    except ServerRejected as exc:
        if exc.status == 400 and exc.error_type in (None, "error-invalid-user"):
            return None
        raise


async def _check(
    rest: RestClient, reference: Reference, bot_user_id: str, rooms: Collection[str]
) -> tuple[str | None, str | None]:
    """(problem, the stored spelling of a post-as username when it differs). A room that does not
    exist is answered with the closest of `rooms` (the caller's own), if any is close."""
    entry = reference.entry
    if reference.kind == "poster":
        user = await _user(rest, username=entry)
        if user is None or not user.username or user.username.casefold() != entry.casefold():
            return f"{reference.key}: there is no user {shown(entry)}; the post-as user must exist", None
        if user.id == bot_user_id:
            return (
                f"{reference.key}: {shown(entry)} is my own account; a webhook posting as me would pass for my answers",
                None,
            )
        return None, user.username if user.username != entry else None
    sigil, ident = entry[:1], entry[1:]
    if sigil == "#":
        if await _room_exists(rest, ident):
            return None, None
        close = rooms_hint(ident, rooms)
        hint = f"; did you mean {close}?" if close else ""
        return f"{reference.key}: there is no room {shown(entry)} (by name or id){hint}", None
    if await _user(rest, username=ident) is not None or await _user(rest, user_id=ident) is not None:
        return None, None
    return f"{reference.key}: there is no user {shown(entry)} (by username or id)", None


async def check_references(plan: Plan, rest: RestClient, *, bot_user_id: str, rooms: Collection[str] = ()) -> Plan:
    """`plan` if it has no problems and everything it names exists (a post-as username then in
    its stored spelling), else `UserInputError` naming every problem: the plan's own (a draft
    from `bot.integrations.fields.draft_changes`) and every missing room or user (with the closest of `rooms`,
    the names of the caller's rooms, for a missing room), in one answer. The bot's own account is
    never a post-as user: a webhook's messages would look like the bot's answers."""
    problems: list[Problem] = list(plan.problems)
    for reference in plan.references:
        problem, spelling = await _check(rest, reference, bot_user_id, rooms)
        if problem is not None:
            problems.append(Problem(problem, reference.rank))
        elif spelling is not None:
            plan = plan.with_value(reference.key, spelling)
    if problems:
        raise refusal(problems)
    return plan
