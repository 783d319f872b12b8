"""Who may talk to the bot (bot/runtime/intake.py, bot/runtime/direct_rooms.py): prefix-less commands only in a DM
with the bot alone, learned once per DM and failing closed; other bot accounts' commands ignored
unless BOT_ALLOWED_BOTS lists their account (by id). Rooms come from a scripted `rooms.info` (httpx.MockTransport)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import stamina
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import Unavailable
from bot.integrations.authz import CallerRights
from bot.rocketchat.messages import ChatMessage
from bot.rocketchat.rest import RestClient
from bot.runtime.direct_rooms import DirectRoom, DirectRooms
from bot.runtime.intake import Intake

BOT_ID, BOT = "BOTID", "integrations-bot"
ALICE_ID, ALICE = "ALICEID", "alice"
DEPLOY_BOT_ID = "DEPLOYBOTID"  # the account BOT_ALLOWED_BOTS lists (its name resolved at start)
BOB_ID, BOB = "BOBID", "bob"
NOW = datetime(2024, 6, 5, 12, 0, tzinfo=UTC)

ONE_TO_ONE = {"_id": "ALICEIDBOTID", "t": "d", "uids": [ALICE_ID, BOT_ID], "usernames": [ALICE, BOT]}
GROUP = {"_id": "GROUP1", "t": "d", "uids": [ALICE_ID, BOB_ID, BOT_ID], "usernames": [ALICE, BOB, BOT]}
LEGACY = {"_id": "LEGACY1", "t": "d", "usernames": [ALICE, BOT]}  # before rooms had `uids`
ROOMS = {room["_id"]: room for room in (ONE_TO_ONE, GROUP, LEGACY)}


@pytest.fixture(autouse=True)
def instant_retries() -> Iterator[None]:
    with stamina.set_testing(True, attempts=1):
        yield


class Server:
    """`rooms.info` answered from ROOMS (unknown: the server's 400), or failing while `down`."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/rooms.info"
        room_id = request.url.params["roomId"]
        self.asked.append(room_id)
        if self.down:
            return httpx.Response(503, json={"success": False, "error": "down"})
        if room_id not in ROOMS:
            return httpx.Response(400, json={"success": False, "errorType": "error-room-not-found", "error": "no"})
        return httpx.Response(200, json={"room": ROOMS[room_id], "success": True})


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
async def intake(server: Server) -> Any:
    rest = RestClient(
        "https://chat.example.org", user_id=BOT_ID, auth_token="t0ken", transport=httpx.MockTransport(server)
    )
    yield Intake(
        bot_user_id=BOT_ID,
        bot_username=BOT,
        prefixes=("!integration",),
        direct_rooms=DirectRooms(rest),
        allowed_bot_ids=frozenset({DEPLOY_BOT_ID}),
    )
    await rest.aclose()


def message(text: str, room: str, *, user: tuple[str, str] = (ALICE_ID, ALICE), kind: str = "d") -> ChatMessage:
    return ChatMessage(
        id=f"m-{room}-{text}"[:40],
        room_id=room,
        text=text,
        ts=NOW,
        updated_at=NOW,
        user_id=user[0],
        username=user[1],
        room_type=kind,
        room_participant=True,
    )


# --- DMs ----------------------------------------------------------------------------------------


async def test_without_prefix_only_in_a_dm_with_the_bot_alone(intake: Intake) -> None:
    talk = "disable incoming Guggy it keeps spamming, right bob?"
    alone, group = message(talk, "ALICEIDBOTID"), message(talk, "GROUP1")
    await intake.prepare([alone, group])
    accepted = intake.accept(alone)
    assert accepted is not None and accepted.invocation is not None
    assert (accepted.invocation.command, accepted.invocation.via, accepted.invocation.is_direct) == (
        "disable",
        "direct",
        True,
    )
    assert intake.accept(group) is None
    assert intake.accept(message("yes", "GROUP1")) is None


async def test_with_the_prefix_a_group_dm_is_like_any_room(intake: Intake) -> None:
    prefixed = message("!integration disable Guggy", "GROUP1")
    await intake.prepare([prefixed])
    accepted = intake.accept(prefixed)
    assert accepted is not None and accepted.invocation is not None
    assert (accepted.invocation.via, accepted.invocation.is_direct) == ("prefix", False)  # so: `!integration yes`
    in_dm = message("!integration set Guggy alias=x", "ALICEIDBOTID")
    await intake.prepare([in_dm])
    found = intake.accept(in_dm)
    assert found is not None and found.invocation is not None and found.invocation.is_direct  # so: bare `yes`


async def test_a_dm_not_learned_yet_needs_the_prefix(intake: Intake, server: Server) -> None:
    assert intake.accept(message("list", "ALICEIDBOTID")) is None
    assert server.asked == []  # accept itself never looks anything up


async def test_each_dm_is_looked_up_once_and_only_when_needed(intake: Intake, server: Server) -> None:
    batch = [
        message("list", "ALICEIDBOTID"),
        message("help", "ALICEIDBOTID"),
        message("!integration list", "GENERAL", kind="c"),  # not a DM
        message("reply", "GROUP1", user=(BOT_ID, BOT)),  # the bot's own message
    ]
    await intake.prepare(batch)
    await intake.prepare(batch)
    assert server.asked == ["ALICEIDBOTID"]


async def test_a_lookup_that_fails_fails_closed_and_is_tried_again(intake: Intake, server: Server) -> None:
    command = message("list", "ALICEIDBOTID")
    server.down = True
    with pytest.raises(Unavailable):
        await intake.prepare([command])
    assert intake.accept(command) is None
    server.down = False
    await intake.prepare([command])
    assert intake.accept(command) is not None


async def test_a_dm_the_server_will_not_describe_needs_the_prefix_and_is_not_asked_again(
    intake: Intake, server: Server
) -> None:
    command = message("list", "GONE1")
    await intake.prepare([command])
    await intake.prepare([command])
    assert intake.accept(command) is None
    assert server.asked == ["GONE1"]


async def test_a_dm_from_before_uids_is_judged_by_usernames(intake: Intake) -> None:
    alice, bob = message("list", "LEGACY1"), message("list", "LEGACY1", user=(BOB_ID, BOB))
    await intake.prepare([alice, bob])
    assert intake.accept(alice) is not None
    assert intake.accept(bob) is None  # bob is not a member: never "alone with the bot"


async def test_the_rooms_remembered_are_bounded(server: Server) -> None:
    rest = RestClient(
        "https://chat.example.org", user_id=BOT_ID, auth_token="t0ken", transport=httpx.MockTransport(server)
    )
    rooms = DirectRooms(rest, capacity=2)
    for room_id in ("ALICEIDBOTID", "GROUP1", "LEGACY1"):  # one at a time: the order they were learned in
        await rooms.learn([room_id])
    assert rooms.get("ALICEIDBOTID") is None and rooms.get("GROUP1") is not None and rooms.get("LEGACY1") is not None
    await rest.aclose()


IDS = st.sampled_from([ALICE_ID, BOB_ID, BOT_ID, "CAROLID"])


@given(members=st.frozensets(IDS, max_size=4), caller=IDS)
def test_alone_with_the_bot_means_exactly_the_caller_and_the_bot(members: frozenset[str], caller: str) -> None:
    room = DirectRoom.from_document({"t": "d", "uids": sorted(members)})
    expected = caller != BOT_ID and members == {caller, BOT_ID}
    assert room.only(caller, "whoever", BOT_ID, BOT) is expected


@pytest.mark.parametrize(
    "document",
    [
        {"t": "c", "uids": [ALICE_ID, BOT_ID]},  # not a DM
        {"t": "d"},  # says nothing about members
        {"t": "d", "uids": "ALICEIDBOTID"},  # not a list
        {"t": "d", "uids": [ALICE_ID, 7]},
    ],
)
def test_a_room_that_does_not_name_its_members_is_never_one_to_one(document: dict[str, Any]) -> None:
    assert DirectRoom.from_document(document).only(ALICE_ID, ALICE, BOT_ID, BOT) is False


# --- other bot accounts ---------------------------------------------------------------------------


def author(
    username: str, *, user_type: str | None = "user", roles: tuple[str, ...] = ("user",), user_id: str | None = None
) -> CallerRights:
    return CallerRights(user_id or f"{username}-id", username, frozenset(roles), frozenset(), user_type=user_type)


@pytest.mark.parametrize(
    ("who", "why"),
    [
        (author("alice"), None),
        (author("ci", user_type="bot"), "an account of type bot"),
        # the `bot` role alone is no bot: Rocket.Chat gives it to a webhook's post-as user, a person
        (author("helper", roles=("user", "bot")), None),
        (author("admin", roles=("admin", "bot")), None),
        (author("nobody-knows", user_type=None, roles=("bot",)), None),  # type left out: not a bot
        (author("deploy-bot", user_type="bot", roles=("bot",), user_id=DEPLOY_BOT_ID), None),  # its account is listed
        # renamed since: the account keeps its exemption
        (author("deploy-bot-old", user_type="bot", roles=("bot",), user_id=DEPLOY_BOT_ID), None),
        # another bot account that took the listed account's name: not the account listed
        (author("deploy-bot", user_type="bot", roles=("bot",), user_id="taker-id"), "an account of type bot"),
        (author("Deploy-Bot", user_type="bot", user_id="taker-id"), "an account of type bot"),
        (author("app-user", user_type="app", roles=("app",)), None),
    ],
)
async def test_type_bot_accounts_are_ignored_unless_listed(intake: Intake, who: CallerRights, why: str | None) -> None:
    assert intake.ignored_author(who) == why


async def test_the_bot_itself_is_never_an_ignored_author(intake: Intake) -> None:
    me = CallerRights(BOT_ID, BOT, frozenset({"bot"}), frozenset(), user_type="bot")
    assert intake.ignored_author(me) is None
