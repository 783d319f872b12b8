"""The floor: the least any client must do for `disable <name>` (or `enable`), by hand.

Four HTTP calls over one keep-alive connection pool, as the bot's own account:

    GET  users.info?userId=<caller>      the caller's roles and rooms, read fresh
    GET  integrations.list?name=<name>   the full document (a list page carries every field)
    PUT  integrations.update             the whole document back with `enabled` flipped
    POST chat.sendMessage                the answer, in the command's room

The first is the least a *correct* client must do before it changes something for someone else
with its own, stronger account: read that person's rights as they are now (a right revoked a
moment ago must be revoked; the bot does the same for every command that changes an
integration). Nothing is done with them here: no parsing, no authorization decision, no state,
no verification, no logs: whatever the bot does beyond this is its overhead. The body is still
the lossless one (a partial body would wipe fields, and a cheaper-but-wrong floor would flatter
nothing).

It uses the same HTTP stack as the bot, including the bot's work-around for httpcore's failing
`import sniffio` on every request (`bot.rocketchat.rest`), so neither side pays a cost the other does not.
Each side gets the connection budget that is best for it: the bot 4 (`bot.rocketchat.rest.MAX_CONNECTIONS`),
the floor 8 (`CONNECTIONS`). Measured back to back, the floor's 100 throughput workers took
5.2-6.0 s with 8 connections and 6.5-6.6 s with 4, so giving it the bot's 4 would flatter the
bot. (With one connection per worker, 100, httpcore's per-request pool bookkeeping made this
client burn ~2x the CPU per command and look twice as slow as it is.)
"""

from __future__ import annotations

import random
from typing import Any, Final

import httpx

import bot.rocketchat.rest  # noqa: F401  (importing it applies its httpcore work-around)
from bot.integrations.service import INCOMING_FIELDS, OUTGOING_FIELDS

# The fields of a lossless body are data, not work: the floor sends what the bot sends.
_INCOMING_FIELDS: Final = INCOMING_FIELDS
_OUTGOING_FIELDS: Final = OUTGOING_FIELDS
CONNECTIONS: Final = 8  # the floor's best budget (module docstring); the bot's is bot.rocketchat.rest.MAX_CONNECTIONS
_ALPHABET: Final = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"


def message_id() -> str:
    return "".join(random.choice(_ALPHABET) for _ in range(17))


def update_body(doc: dict[str, Any], enabled: bool) -> dict[str, Any]:
    fields = _INCOMING_FIELDS if doc["type"] == "webhook-incoming" else _OUTGOING_FIELDS
    body: dict[str, Any] = {
        "type": doc["type"],
        "integrationId": doc["_id"],
        "name": doc["name"],
        "enabled": enabled,
        "scriptEnabled": doc.get("scriptEnabled") is True,
        "channel": ",".join(doc.get("channel") or []),
    }
    body.update({key: doc[key] for key in fields if doc.get(key) is not None})
    return body


class FloorClient:
    def __init__(self, url: str, user_id: str, auth_token: str, *, connections: int = CONNECTIONS) -> None:
        self._http = httpx.AsyncClient(
            base_url=f"{url}/api/v1",
            headers={"X-User-Id": user_id, "X-Auth-Token": auth_token},
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            timeout=30.0,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def set_enabled(self, name: str, enabled: bool, room_id: str, caller_id: str) -> str:
        """Do the command's work for `caller_id`; returns the `_id` of the answer it stored."""
        caller = await self._http.get("users.info", params={"userId": caller_id, "includeUserRooms": "true"})
        caller.raise_for_status()
        listed = (await self._http.get("integrations.list", params={"name": name})).json()
        doc = next(d for d in listed["integrations"] if d["name"] == name)
        updated = await self._http.put("integrations.update", json=update_body(doc, enabled))
        updated.raise_for_status()
        answer_id = message_id()
        word = "Enabled" if enabled else "Disabled"
        sent = await self._http.post(
            "chat.sendMessage",
            json={"message": {"_id": answer_id, "rid": room_id, "msg": f"{word} `{name}` ({doc['type']})."}},
        )
        sent.raise_for_status()
        return answer_id
