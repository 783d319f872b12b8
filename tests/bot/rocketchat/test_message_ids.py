"""The bot's message ids (bot/rocketchat/message_ids.py): keyed derivation, the "is it the bot's own" check,
and posting along an id chain when someone else holds an id, against the sandbox REST app.

The sandbox is served through `httpx.ASGITransport` (no sockets). Other users post with chosen
ids through the same store rules as `chat.sendMessage` (any unused id, in any room they may post in).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import stamina
import structlog
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import ServerRejected
from bot.rocketchat.message_ids import ALPHABET, CHAIN_LENGTH, ID_LENGTH, MessageIds, Purpose, is_own, meteor_id, post
from bot.rocketchat.rest import RestClient
from sandbox.config import SandboxConfig
from sandbox.rest import create_rest_app
from sandbox.store import Store

KEY = bytes(range(32))
keys = st.binary(min_size=32, max_size=64)
subjects = st.one_of(st.text(max_size=40), st.integers(min_value=0, max_value=2**53))


# --- derivation ------------------------------------------------------------------------------------


@given(keys, st.sampled_from(Purpose), st.lists(subjects, min_size=1, max_size=3))
def test_every_id_is_a_meteor_style_id_and_a_chain_has_distinct_ids(
    key: bytes, purpose: Purpose, subject: list[str | int]
) -> None:
    chain = MessageIds(key).chain(purpose, *subject)
    assert len(chain) == CHAIN_LENGTH == len(set(chain))
    assert all(len(i) == ID_LENGTH and set(i) <= set(ALPHABET) for i in chain)
    assert MessageIds(bytes(key)).chain(purpose, *subject) == chain  # the same key gives the same ids


@given(keys, keys, subjects)
def test_another_key_gives_other_ids(first: bytes, second: bytes, subject: str | int) -> None:
    if first != second:
        assert not set(MessageIds(first).chain(Purpose.ANSWER, subject)) & set(
            MessageIds(second).chain(Purpose.ANSWER, subject)
        )


@given(subjects, subjects)
def test_ids_of_different_subjects_or_purposes_never_coincide(one: str | int, other: str | int) -> None:
    ids = MessageIds(KEY)
    chains = [ids.chain(purpose, one) for purpose in Purpose]
    if one != other:
        chains.append(ids.chain(Purpose.ANSWER, other))
    everything = [i for chain in chains for i in chain]
    assert len(everything) == len(set(everything))


def test_the_kinds_of_messages_have_their_own_chains() -> None:
    ids = MessageIds(KEY)
    assert ids.answer("5") == ids.chain(Purpose.ANSWER, "5")
    assert ids.audit_line(5) == ids.chain(Purpose.AUDIT_LINE, 5)
    assert ids.timer_notice(5, "re-enabled") == ids.chain(Purpose.TIMER_NOTICE, 5, "re-enabled")
    assert ids.timer_notice(5, "re-enabled") != ids.timer_notice(5, "overridden")
    # Subjects are encoded unambiguously: ("5-re", "enabled") is not ("5", "re-enabled").
    assert ids.chain(Purpose.TIMER_NOTICE, "5-re", "enabled") != ids.chain(Purpose.TIMER_NOTICE, "5", "re-enabled")


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        MessageIds(b"too short")


def test_meteor_ids_are_base_55_digits_of_the_digest() -> None:
    assert meteor_id(bytes(32)) == ALPHABET[0] * ID_LENGTH
    assert meteor_id((1).to_bytes(32, "big")) == ALPHABET[1] + ALPHABET[0] * (ID_LENGTH - 1)
    assert meteor_id((55).to_bytes(32, "big")) == ALPHABET[0] + ALPHABET[1] + ALPHABET[0] * (ID_LENGTH - 2)


# --- is it the bot's own? ------------------------------------------------------------------------


def document(author: str, room: str, thread: str | None) -> dict[str, Any]:
    found: dict[str, Any] = {"_id": "x", "rid": room, "u": {"_id": author, "username": author}}
    if thread is not None:
        found["tmid"] = thread
    return found


names = st.sampled_from(["bot", "mallory", "R1", "R2", "T1"])


@given(names, names, st.one_of(st.none(), names), names, st.one_of(st.none(), names))
def test_only_the_bots_message_in_the_expected_room_and_thread_is_its_own(
    author: str, room: str, thread: str | None, expected_room: str, expected_thread: str | None
) -> None:
    own = is_own(document(author, room, thread), user_id="bot", room_id=expected_room, thread_id=expected_thread)
    assert own == (author == "bot" and room == expected_room and thread == expected_thread)


def test_nothing_is_own_without_knowing_who_the_bot_is_or_without_an_author() -> None:
    assert not is_own(document("bot", "R1", None), user_id=None, room_id="R1", thread_id=None)
    assert not is_own({"_id": "x", "rid": "R1"}, user_id="bot", room_id="R1", thread_id=None)


# --- posting along the chain -----------------------------------------------------------------------


@dataclass
class Chat:
    store: Store
    rest: RestClient
    bot_id: str
    room: str  # the bot and mallory are members
    other_room: str  # mallory's own: the bot cannot read it

    def post_as(self, username: str, room_id: str, message_id: str, *, tmid: str | None = None) -> None:
        user = self.store.find_user(username)
        assert user is not None
        self.store.send_message(user._id, room_id, "got there first", message_id=message_id, tmid=tmid)

    def bot_messages(self, room_id: str) -> list[dict[str, Any]]:
        return [m for m in self.store.room_messages(room_id) if m["u"]["_id"] == self.bot_id]


@pytest.fixture
async def chat() -> AsyncIterator[Chat]:
    store = Store()
    app = create_rest_app(store, SandboxConfig())
    bot = store.create_user("integrations-bot", password="pw-bot", roles=["bot"])
    store.create_user("mallory", password="pw-m", roles=["user"])
    room = store.create_room("ops", "c", members=["integrations-bot", "mallory"])
    den = store.create_room("den", "p", members=["mallory"])
    rest = RestClient(
        "http://sandbox.test",
        user_id=bot._id,
        auth_token=store.create_login_token(bot._id),
        transport=httpx.ASGITransport(app=app),
    )
    with stamina.set_testing(True, attempts=2):
        yield Chat(store, rest, bot._id, room["_id"], den["_id"])
    await rest.aclose()


async def test_a_message_takes_the_first_id_of_its_chain(chat: Chat) -> None:
    chain = MessageIds(KEY).answer("cmd")
    stored = await post(chat.rest, chain, chat.room, "hello")
    assert stored["_id"] == chain[0]
    assert await post(chat.rest, chain, chat.room, "hello") == stored  # re-sent: stored once
    assert [m["_id"] for m in chat.bot_messages(chat.room)] == [chain[0]]


@pytest.mark.parametrize(
    ("holder", "where"),
    [("mallory", "other_room"), ("mallory", "room"), ("integrations-bot", "elsewhere")],
    ids=["a-user-in-a-room-the-bot-cannot-read", "a-user-in-the-same-room", "the-bot-in-another-room"],
)
async def test_an_id_held_by_another_message_is_skipped_and_the_message_still_stored_once(
    chat: Chat, holder: str, where: str
) -> None:
    chain = MessageIds(KEY).answer("cmd")
    if where == "elsewhere":
        elsewhere = chat.store.create_room("elsewhere", "c", members=["integrations-bot"])
        chat.post_as(holder, elsewhere["_id"], chain[0])
    else:
        chat.post_as(holder, getattr(chat, where), chain[0])
    with structlog.testing.capture_logs() as captured:
        stored = await post(chat.rest, chain, chat.room, "the answer")
        again = await post(chat.rest, chain, chat.room, "the answer")  # a re-send, after a restart say
    assert stored["_id"] == again["_id"] == chain[1]
    assert [m["_id"] for m in chat.bot_messages(chat.room)] == [chain[1]]
    taken = [e for e in captured if e["event"] == "message_id.taken"]
    assert len(taken) == 2 and {e["message_id"] for e in taken} == {chain[0]} and taken[0]["log_level"] == "warning"


async def test_in_a_thread_the_bots_own_reply_is_recognised_and_a_held_id_skipped(chat: Chat) -> None:
    parent = chat.store.send_message(chat.bot_id, chat.room, "a thread")
    chain = MessageIds(KEY).answer("cmd")
    chat.post_as("mallory", chat.room, chain[0])  # the same room, outside the thread
    stored = await post(chat.rest, chain, chat.room, "in the thread", thread_id=parent["_id"])
    again = await post(chat.rest, chain, chat.room, "in the thread", thread_id=parent["_id"])
    assert stored["_id"] == again["_id"] == chain[1] and stored.get("tmid") == parent["_id"]


async def test_when_every_id_of_the_chain_is_held_the_message_is_still_delivered(chat: Chat) -> None:
    chain = MessageIds(KEY).answer("cmd")
    for held in chain:  # someone has the key
        chat.post_as("mallory", chat.other_room, held)
    with structlog.testing.capture_logs() as captured:
        stored = await post(chat.rest, chain, chat.room, "the answer")
    assert stored["_id"] not in chain and [m["msg"] for m in chat.bot_messages(chat.room)] == ["the answer"]
    (alarm,) = [e for e in captured if e["event"] == "message_id.chain_taken"]
    assert alarm["log_level"] == "error"


async def test_other_refusals_are_not_mistaken_for_a_held_id(chat: Chat) -> None:
    chain = MessageIds(KEY).answer("cmd")
    with pytest.raises(ServerRejected) as refused:
        await post(chat.rest, chain, chat.other_room, "not allowed there")
    assert refused.value.error_type == "error-not-allowed"
    assert chat.store.get_message(chain[1]) is None  # no walk along the chain
