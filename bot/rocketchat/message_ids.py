"""Every message id the bot posts: derived with a secret key, and accepted back only from the bot.

Why the bot chooses its messages' ids
-------------------------------------
An answer (to a command), an audit-room line (per audit row) and a timer notice (per ending of a
timed disable) each get an `_id` the bot derives from what the message is about. Posting the same
message twice (a retry after a timeout, a restart between posting and recording it) then stores
it once: the server refuses a second message with that id (`error-duplicate-message`), and the
stored one stands. The same id lets a restart ask "was this command answered?" (bot.runtime.recovery,
bot.runtime.catchup) without any record of the answer on the bot's side.

Why a secret key
----------------
`_id` on `chat.sendMessage` is chosen by the client, and any user may post with any id nobody
used yet (contract §8, gotcha 26). Ids derived from public values (a hash of the command's id,
of an audit row's number) could be taken first by anyone, from any room: the answer then never
appeared, and a fake answer posted while the bot was down made catch-up skip the real command.
So an id is HMAC-SHA256(key, purpose, subject, attempt), written as a Meteor-style id (17
characters of Meteor's alphabet, ~98 bits): `key` is 32 bytes made when the state file is
first opened and kept in it (bot/state/store.py), so a message re-sent after a restart has the same
id. The bot derives it from its own secret credential (`derive_key`), so a new state file (the
old one lost) has the same key: catch-up still recognises the answers already in the rooms and
does not run those commands again. Without the state file or the bot's credential nobody can
tell an id before the bot posts it, and a posted id says nothing about any other. The purpose
(answer, audit line, timer notice) is part of the input, so ids of different kinds never
coincide. Keep the state file private: whoever reads the key can compute the ids (they still
cannot forge or cancel anything, see below: the ids only stop being a surprise).

A duplicate is "already posted" only when it is the bot's own
--------------------------------------------------------------
`error-duplicate-message` proves that somebody posted that id, not that the bot did. A stored
message counts as the bot's (`is_own`) only when its author is the bot's user and it is in the
expected room and thread; `RestClient.chat_send_message` applies that to a duplicate, and
recovery and catch-up apply it to an answer they find. Anything else is a collision: someone
else holds the id (the key leaked, or a 1-in-55^17 chance). The message then takes the next id
of its *chain* (`CHAIN_LENGTH` ids per message: attempt 0, 1, 2), and a warning is logged. The
bot moves past an id only when a foreign message holds it, so a re-send (after a restart too)
walks the same chain and stops at its own message: still stored once. Recovery and catch-up
accept the bot's own message at any id of the chain. When every id of the chain is held by
others (someone has the key and is using it), the message is posted with a random id so it is
still delivered; that is logged as an error, and a re-send after a restart could then post it
twice. Then rotate the key once the leak is closed: give the bot a new token (the key is
derived from it), stop the bot (idle before, so no answer is pending), and
`DELETE FROM secrets WHERE name = 'message-ids'` in the state file; the next start makes the new
key, and everything else in the file stays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from bot import logs
from bot.errors import MessageIdTaken, ServerRejected

if TYPE_CHECKING:
    from bot.rocketchat.rest import RestClient

log = logs.get_logger("integrations_bot.message_ids")

ALPHABET: Final = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"  # Meteor's Random.id()
ID_LENGTH: Final = 17
KEY_BYTES: Final = 32
# Ids per message: the first, and two more for the case someone else holds one (see above).
CHAIN_LENGTH: Final = 3


def derive_key(seed: bytes) -> bytes:
    """The key a new state file gets from a secret of the bot's (its token or password): the same
    secret gives the same key, so a bot whose state file was lost still recognises its answers
    already in the rooms (catch-up does not run those commands again). One-way: the key tells
    nothing about the secret."""
    return hmac.new(seed, b"integrations-bot message ids v1", hashlib.sha256).digest()


class Purpose(StrEnum):
    ANSWER = "answer"
    AUDIT_LINE = "audit-line"
    TIMER_NOTICE = "timer-notice"
    FLOOD_NOTICE = "flood-notice"


def meteor_id(digest: bytes) -> str:
    """17 characters of Meteor's alphabet from (the first 256 bits of) `digest`: base 55 of the
    number it spells, which is uniform to within 55^17 / 2^256 (nothing measurable)."""
    number = int.from_bytes(digest[:32], "big")
    characters = []
    for _ in range(ID_LENGTH):
        number, digit = divmod(number, len(ALPHABET))
        characters.append(ALPHABET[digit])
    return "".join(characters)


def random_id() -> str:
    """A fresh, unpredictable Meteor-style id (the last resort of `post`)."""
    return meteor_id(secrets.token_bytes(32))


@dataclass(frozen=True)
class MessageIds:
    """The ids of the bot's messages, for one key (the state file's)."""

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) < KEY_BYTES:
            raise ValueError(f"a message id key has at least {KEY_BYTES} bytes")

    def chain(self, purpose: Purpose, *subject: str | int) -> tuple[str, ...]:
        """The ids one message may take, in the order it tries them (see the module docstring)."""
        return tuple(self._derive(purpose, subject, attempt) for attempt in range(CHAIN_LENGTH))

    def _derive(self, purpose: Purpose, subject: Sequence[str | int], attempt: int) -> str:
        # JSON of a list: an unambiguous encoding, whatever characters a subject holds.
        data = json.dumps([purpose.value, *subject, attempt], separators=(",", ":")).encode()
        return meteor_id(hmac.digest(self.key, data, hashlib.sha256))

    def answer(self, command_id: str) -> tuple[str, ...]:
        """The ids of the answer to the command message `command_id`."""
        return self.chain(Purpose.ANSWER, command_id)

    def audit_line(self, audit_id: int) -> tuple[str, ...]:
        """The ids of the audit room's line for audit row `audit_id`."""
        return self.chain(Purpose.AUDIT_LINE, audit_id)

    def timer_notice(self, timer_id: int, kind: str) -> tuple[str, ...]:
        """The ids of the notice that timed disable `timer_id` ended (`kind`: how)."""
        return self.chain(Purpose.TIMER_NOTICE, timer_id, kind)

    def group_notice(self, group_id: int) -> tuple[str, ...]:
        """The ids of the notice that the members of bulk disable `group_id` are back on."""
        return self.chain(Purpose.TIMER_NOTICE, "group", group_id)


def author_id(document: object) -> str | None:
    """The user id of a message document's author (`u._id`), if it has one."""
    author = document.get("u") if isinstance(document, Mapping) else None
    found = author.get("_id") if isinstance(author, Mapping) else None
    return found if isinstance(found, str) else None


def is_own(document: Mapping[str, Any], *, user_id: str | None, room_id: str, thread_id: str | None) -> bool:
    """Whether a stored message is one the bot posted there: its author is the bot's user, it is
    in `room_id`, and in thread `thread_id` (None: not in a thread). Only the server sets `u` and
    `rid`, so nobody else can make a message pass."""
    return (
        user_id is not None
        and author_id(document) == user_id
        and document.get("rid") == room_id
        and (document.get("tmid") or None) == thread_id
    )


def own_among(
    documents: Mapping[str, Mapping[str, Any]],
    chain: Sequence[str],
    *,
    user_id: str | None,
    room_id: str,
    thread_id: str | None,
) -> Mapping[str, Any] | None:
    """The bot's own message at one of `chain`'s ids among `documents` (by id), if any."""
    for candidate in chain:
        document = documents.get(candidate)
        if document is not None and is_own(document, user_id=user_id, room_id=room_id, thread_id=thread_id):
            return document
    return None


async def own_at(rest: RestClient, chain: Sequence[str], *, room_id: str, thread_id: str | None) -> bool:
    """Whether the bot's own message (`is_own`) stands at an id of `chain`, looked up on the
    server. Every id is looked at, not only those up to the first free one: a message that held
    an earlier id when the bot posted may have been deleted since. Errors other than "not found"
    propagate (the caller decides what "cannot tell" means)."""
    for candidate in chain:
        try:
            found = await rest.chat_get_message(candidate)
        except ServerRejected:
            continue  # not found, or not readable by the bot: not its answer
        if is_own(found, user_id=rest.user_id, room_id=room_id, thread_id=thread_id):
            return True
    return False


async def post(
    rest: RestClient,
    chain: Sequence[str],
    room_id: str,
    text: str,
    *,
    thread_id: str | None = None,
    attachments: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Post a message at the first id of `chain` that no one else holds; returns the stored
    message (the bot's own one already there, after a re-send). Errors other than a foreign
    holder (`Unavailable`, `ServerRejected`, ...) propagate: calling again is safe, it stores the
    message once (unless every id of the chain is held, see the module docstring)."""
    for message_id in chain:
        try:
            return await rest.chat_send_message(
                room_id, text, thread_id=thread_id, message_id=message_id, attachments=attachments
            )
        except MessageIdTaken:
            # Not the bot's message: someone else posted with this id (see the module docstring).
            log.warning("message_id.taken", message_id=message_id, room_id=room_id)
    fallback = random_id()
    log.error("message_id.chain_taken", room_id=room_id, chain=list(chain), message_id=fallback)
    return await rest.chat_send_message(
        room_id, text, thread_id=thread_id, message_id=fallback, attachments=attachments
    )


__all__ = [
    "ALPHABET",
    "CHAIN_LENGTH",
    "KEY_BYTES",
    "MessageIds",
    "Purpose",
    "author_id",
    "is_own",
    "meteor_id",
    "own_among",
    "own_at",
    "post",
    "random_id",
]
