"""A large, deterministic benchmark workspace written straight into a sandbox `Store`.

Seeding goes through the store's own methods (the same rules as the control API, without an HTTP
round trip per object), so 10,000 users, 1,000 rooms and 10,000 integrations take seconds.

Who is who:
* `integrations-bot`: the seeded bot role (`sandbox.seed.BOT_PERMISSIONS`), a personal access
  token, member of every room;
* `operator-000` … `operator-099`: the people who type commands; role `bench-operator` holds the
  four manage-*-integrations permissions (with both permissions of a type, Rocket.Chat skips the
  room-membership rule). Operator i types in command room i % `COMMAND_ROOMS`;
* `user-00000` …: plain users, each in `ROOMS_PER_USER` random rooms (so `users.info` answers
  and room fan-out have realistic sizes);
* rooms `room-0000` …: public channels; the first `COMMAND_ROOMS` are where commands are typed;
* for the catch-up figure only, at the end of a run: direct messages between the bot and plain
  users (`grow_direct_rooms`), until the bot is in 10,000 rooms;
* integrations `hook-00000` …: two incoming for every outgoing one, with scripts, aliases,
  trigger words and retry settings. Zero-padded names, so no name is a substring of another
  (`integrations.list?name=` is a substring search and the bot pages through every match).
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from typing import Any, Final

from sandbox.control import incoming_integration_document, outgoing_integration_document
from sandbox.seed import BOT_PERMISSIONS, BOT_ROLE
from sandbox.store import Store

BOT_USERNAME: Final = "integrations-bot"
OPERATOR_ROLE: Final = "bench-operator"
OPERATOR_PERMISSIONS: Final = (
    "manage-incoming-integrations",
    "manage-outgoing-integrations",
    "manage-own-incoming-integrations",
    "manage-own-outgoing-integrations",
)
OPERATORS: Final = 100
COMMAND_ROOMS: Final = 10
ROOMS_PER_USER: Final = 3
_ALPHABET: Final = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"
_SCRIPT: Final = (
    "class Script {\n  process_incoming_request({ request }) {\n"
    "    return { content: { text: request.content.text } };\n  }\n}\n"
)


@dataclass(frozen=True)
class WorkspaceSpec:
    users: int = 10_000
    rooms: int = 1_000
    integrations: int = 100
    seed: int = 7


def integration_name(number: int) -> str:
    return f"hook-{number:05d}"


def room_name(number: int) -> str:
    return f"room-{number:04d}"


def operator_name(number: int) -> str:
    return f"operator-{number:03d}"


def _meteor_id(rng: random.Random) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(17))


def seed_workspace(store: Store, spec: WorkspaceSpec) -> dict[str, Any]:
    """Fill an empty store; returns what the driver needs (ids, the bot's token), JSON-ready."""
    rng = random.Random(spec.seed)
    with store.lock:
        store.create_role(BOT_ROLE, description="Can change every integration")
        store.create_role(OPERATOR_ROLE, description="Types integration commands")
        for permission in {*BOT_PERMISSIONS, *OPERATOR_PERMISSIONS}:
            current = store.permissions.get(permission, {}).get("roles", [])
            holders = [*current]
            if permission in BOT_PERMISSIONS:
                holders.append(BOT_ROLE)
            if permission in OPERATOR_PERMISSIONS:
                holders.append(OPERATOR_ROLE)
            store.set_permission_roles(permission, holders)

        bot = store.create_user(
            BOT_USERNAME, roles=["bot", BOT_ROLE], name="Integrations Bot", user_type="bot", user_id=_meteor_id(rng)
        )
        token = store.create_login_token(bot._id, kind="personalAccessToken", name="bench")
        store.create_user("admin", roles=["admin"], user_id=_meteor_id(rng))
        store.create_user("rocket.cat", roles=["bot"], user_type="bot", user_id=_meteor_id(rng))
        operators = [
            store.create_user(operator_name(n), roles=["user", OPERATOR_ROLE], user_id=_meteor_id(rng))
            for n in range(OPERATORS)
        ]
        plain = max(0, spec.users - OPERATORS - 3)
        users = [store.create_user(f"user-{n:05d}", user_id=_meteor_id(rng)) for n in range(plain)]

        members: list[list[str]] = [[BOT_USERNAME] for _ in range(spec.rooms)]
        for number, operator in enumerate(operators):
            members[number % min(COMMAND_ROOMS, spec.rooms)].append(operator.username)
        for user in users:
            for room in rng.sample(range(spec.rooms), min(ROOMS_PER_USER, spec.rooms)):
                members[room].append(user.username)
        rooms = [
            store.create_room(room_name(n), members=members[n], owner="admin", room_id=_meteor_id(rng))["_id"]
            for n in range(spec.rooms)
        ]
        grow_integrations(store, spec.integrations, spec.rooms)
        return {
            "bot": {"userId": bot._id, "username": bot.username, "authToken": token},
            "operators": [{"userId": o._id, "username": o.username} for o in operators],
            "command_rooms": rooms[:COMMAND_ROOMS],
            "users": len(store.users),
            "rooms": len(store.rooms),
        }


def grow_integrations(store: Store, total: int, rooms: int) -> int:
    """Add integrations `hook-<n>` until there are `total` of them; returns how many exist."""
    with store.lock:
        have = len(store.integrations)
        for number in range(have, total):
            store.insert_integration(_integration(store, number, rooms))
        return len(store.integrations)


def _integration(store: Store, number: int, rooms: int) -> dict[str, Any]:
    name = integration_name(number)
    channel = f"#{room_name(number % rooms)}"
    if number % 3 == 2:
        return outgoing_integration_document(
            store,
            name,
            channel=channel,
            urls=[f"https://hooks.example.org/{name}"],
            created_by="admin",
            trigger_words=[f"!{name}"],
            token=secrets.token_urlsafe(18),
            alias=name,
            emoji=":robot:",
            retry_failed_calls=True,
            retry_count=5,
            run_on_edits=True,
        )
    return incoming_integration_document(
        store,
        name,
        channel=channel,
        created_by="admin",
        alias=name,
        emoji=":ghost:",
        avatar=f"https://example.org/{name}.png",
        script=_SCRIPT if number % 2 else None,
        script_enabled=bool(number % 2),
        token=secrets.token_urlsafe(36),
    )


def grow_direct_rooms(store: Store, total: int, active: int) -> dict[str, Any]:
    """Direct messages between the bot and plain users until the bot is in `total` rooms (or every
    plain user has one); returns how many rooms the bot is in and, for the first `active` DMs, the
    room and the user who can type there."""
    with store.lock:
        bot = store.find_user(BOT_USERNAME)
        assert bot is not None, "seed_workspace first"
        have = len(store.user_subscriptions(bot._id))
        plain = sorted(u for u in (user.username for user in store.users.values()) if u.startswith("user-"))
        dms: list[dict[str, str]] = []
        for username in plain:
            if have >= total and len(dms) >= active:
                break
            user = store.find_user(username)
            assert user is not None
            fresh = not store.is_member(_direct_id(bot._id, user._id), bot._id)
            room = store.create_direct(BOT_USERNAME, username)
            have += 1 if fresh else 0
            if len(dms) < active:
                dms.append({"room": room["_id"], "userId": user._id})
        return {"rooms": len(store.user_subscriptions(bot._id)), "dms": dms}


def _direct_id(a: str, b: str) -> str:
    """A two-person DM's id: both user ids, sorted and joined (`createDirectRoom`)."""
    return "".join(sorted((a, b)))
