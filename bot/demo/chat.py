"""The demo's terminal chat: type as a seeded user, see the bot's answers as they arrive.

Theory of operation
-------------------
Sending and receiving take different doors on purpose.

* Lines are posted with REST `chat.sendMessage` under the current user's own token, so they take
  the same server path as a message typed in a real client: the server applies its send rules
  (membership, read-only rooms, threads) and the bot receives them on its realtime stream.
* What is said in the current room is read by long-polling the sandbox's control API
  (`wait_messages`), not over DDP as the current user. The control API sees every room with a
  cursor taken *before* a line is sent, so an answer that arrives while the line is still in
  flight cannot be missed; it returns the newest copy of changed messages, so edits and reactions
  show up too; and it does not depend on who the current user is, so `:user` and `:room` switch
  instantly instead of logging in and resubscribing a websocket each time. The demo only ever
  runs against the sandbox, which is what makes this door available.

`RoomFeed` keeps the cursor and what was already shown per message (its `message_signature`), so
thread counters and other re-deliveries that change nothing visible are not printed twice.
`ChatSession` holds who and where you are and turns each parsed line (`bot.demo.script_lines`) into
lines of output. `run_script` drives a session from a file and waits for the bot's answer to each
line; `run_interactive` reads the terminal while a watcher thread prints the room as it changes.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import httpx

from bot.config import Settings
from bot.demo.render import (
    Change,
    RoomRef,
    integrations_table,
    message_signature,
    prompt,
    render_message,
    table,
)
from bot.demo.script_lines import (
    Action,
    Flood,
    Invalid,
    Quit,
    Send,
    Show,
    Skip,
    SwitchRoom,
    SwitchUser,
    Thread,
    help_lines,
    parse_line,
)
from bot.demo.traffic import DemoTrafficError, Flooded, flood
from bot.errors import BotError
from sandbox.control import ControlError, NotFound, SandboxClient

BOT_USERNAME: Final = "integrations-bot"
DEFAULT_USER: Final = "admin"  # sees everything, so a first `list` shows the workspace
DEFAULT_ROOM: Final = "general"
FLOOD_NOTICE_AT: Final[int] = Settings.model_fields["bot_flood_threshold"].default
QUIET_AFTER_ANSWER: Final = 0.5  # seconds without news after an answer before the next script line
HISTORY_ON_ENTER: Final = 3  # messages shown when entering a room interactively
_ID_ALPHABET: Final = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"  # Meteor's Random.id


class DemoError(BotError):
    """Something the demo cannot do; the message is one line for the person at the terminal."""


def new_message_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(17))


# --- the workspace ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoUser:
    username: str
    user_id: str
    auth_token: str = field(repr=False)
    roles: tuple[str, ...]


@dataclass(frozen=True)
class Workspace:
    """The sandbox's credentials file, read once: who can type, which rooms exist, the control API."""

    url: str
    users: Mapping[str, DemoUser]
    rooms: Mapping[str, str]  # name (or "dm:a:b") -> room id
    control_url: str
    control_secret: str = field(repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Workspace:
        try:
            users = {
                name: DemoUser(name, str(u["userId"]), str(u["authToken"]), tuple(u.get("roles") or ()))
                for name, u in data["users"].items()
            }
            return cls(
                url=str(data["url"]),
                users=users,
                rooms={str(k): str(v) for k, v in data["rooms"].items()},
                control_url=str(data["control"]["url"]),
                control_secret=str(data["control"]["secret"]),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise DemoError(f"the sandbox's credentials file is incomplete ({type(exc).__name__}: {exc})") from None

    @classmethod
    def load(cls, path: Path) -> Workspace:
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise DemoError(f"cannot read the sandbox's credentials file {path}: {exc}") from None

    def user(self, username: str) -> DemoUser:
        found = self.users.get(username)
        if found is None:
            raise DemoError(f"no user {username!r} to type as; :users lists them")
        return found


# --- sending: REST as the current user -------------------------------------------------------------


class ChatApi:
    """The few REST calls the demo makes as a chat user; httpx errors stop here."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, headers={"Accept": "application/json"})

    def close(self) -> None:
        self._http.close()

    def send(
        self, user: DemoUser, room_id: str, text: str, *, thread_id: str | None = None, message_id: str | None = None
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"rid": room_id, "msg": text}
        if thread_id is not None:
            message["tmid"] = thread_id
        if message_id is not None:
            message["_id"] = message_id
        body = self._post(user, "chat.sendMessage", {"message": message})
        sent = body.get("message")
        if not isinstance(sent, dict):
            raise DemoError("chat.sendMessage answered without the message")
        return sent

    def direct_room(self, user: DemoUser, peer: str) -> str:
        body = self._post(user, "im.create", {"username": peer})
        room = body.get("room")
        if not isinstance(room, dict) or not room.get("_id"):
            raise DemoError("im.create answered without a room")
        return str(room.get("rid") or room["_id"])

    def _post(self, user: DemoUser, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"X-User-Id": user.user_id, "X-Auth-Token": user.auth_token}
        try:
            response = self._http.post(f"/api/v1/{endpoint}", json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DemoError(f"{endpoint}: the sandbox did not answer ({type(exc).__name__})") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code != 200 or not isinstance(answer, dict) or answer.get("success") is False:
            error = answer.get("error") if isinstance(answer, dict) else None
            raise DemoError(f"Rocket.Chat refused it: {error or f'HTTP {response.status_code}'}")
        return answer


# --- receiving: the control API's long poll --------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One message (or a visible change of it) to show."""

    message: dict[str, Any]
    change: Change

    @property
    def username(self) -> str | None:
        user = self.message.get("u")
        return str(user.get("username")) if isinstance(user, Mapping) else None


class RoomFeed:
    """The current room's messages as they appear or change. Thread-safe: one thread may poll
    while another switches rooms; a poll that raced a switch is discarded."""

    def __init__(self, poll_client: SandboxClient) -> None:
        self._client = poll_client
        self._lock = threading.Lock()
        self._room: RoomRef | None = None
        self._cursor: int | None = None
        self._shown: dict[str, tuple[Any, ...]] = {}
        self._generation = 0

    def close(self) -> None:
        self._client.close()

    def switch(self, room: RoomRef, client: SandboxClient) -> list[dict[str, Any]]:
        """Follow `room` from now on; returns the messages already there (all marked as shown)."""
        try:
            messages, cursor = client.wait_messages(room.id, None)
        except (NotFound, ControlError, httpx.HTTPError) as exc:
            raise DemoError(f"cannot follow {room.label}: {exc}") from None
        with self._lock:
            self._room, self._cursor = room, cursor
            self._generation += 1
            for message in messages:
                self._shown[str(message.get("_id"))] = message_signature(message)
        return messages

    def mark_shown(self, message: Mapping[str, Any]) -> None:
        with self._lock:
            self._shown[str(message.get("_id"))] = message_signature(message)

    def poll(self, timeout: float) -> tuple[RoomRef | None, list[Seen]]:
        """What changed visibly in the room within `timeout` seconds (returns at the first news)."""
        with self._lock:
            room, cursor, generation = self._room, self._cursor, self._generation
        if room is None:
            time.sleep(min(timeout, 0.1))
            return None, []
        try:
            messages, new_cursor = self._client.wait_messages(room.id, cursor, timeout)
        except (NotFound, ControlError, httpx.HTTPError) as exc:
            raise DemoError(f"lost the sandbox while reading {room.label}: {exc}") from None
        seen: list[Seen] = []
        with self._lock:
            if generation != self._generation:
                return None, []  # the room changed meanwhile; the switch took its own snapshot
            self._cursor = new_cursor
            for message in messages:
                key, signature = str(message.get("_id")), message_signature(message)
                before = self._shown.get(key)
                if before == signature:
                    continue
                self._shown[key] = signature
                if before is None:
                    seen.append(Seen(message, "new"))
                else:
                    edited = before[0] != signature[0] or before[1] != signature[1]
                    seen.append(Seen(message, "edited" if edited else "updated"))
        return room, seen


# --- the session ------------------------------------------------------------------------------------


Health = Callable[[], str | None]
Output = Callable[[str], None]


class ChatSession:
    """Who you are, where you are, and what each typed line does."""

    def __init__(
        self,
        workspace: Workspace,
        *,
        api: ChatApi,
        control: SandboxClient,
        feed: RoomFeed,
        out: Output,
        health: Health = lambda: None,
        bot_username: str = BOT_USERNAME,
        history_on_enter: int = 0,
    ) -> None:
        self.workspace = workspace
        self.api = api
        self.control = control
        self.feed = feed
        self.out = out
        self.health = health
        self.bot_username = bot_username
        self.history_on_enter = history_on_enter  # messages shown when entering a room
        self.user = workspace.user(DEFAULT_USER if DEFAULT_USER in workspace.users else next(iter(workspace.users)))
        self.room: RoomRef | None = None
        self.thread_id: str | None = None
        self._last_sent: dict[str, dict[str, Any]] = {}  # room id -> the last message sent there
        self.flooded: Flooded | None = None  # what the last `:flood` did

    # state changes

    def enter(self, room: RoomRef, *, history: int = 0) -> None:
        """Follow `room` (a new thread of thought: any thread is left); show its last `history` messages."""
        messages = self.feed.switch(room, self.control)
        self.room, self.thread_id = room, None
        for message in messages[-history:] if history else []:
            self.show(message, "new")

    def resolve_room(self, name: str | None) -> RoomRef:
        if name is None:
            if self.user.username == self.bot_username:
                raise DemoError(f"you are typing as {self.bot_username}; :user someone else first")
            dm_id = self.api.direct_room(self.user, self.bot_username)
            return RoomRef(dm_id, self.bot_username, "d", peer=self.bot_username)
        try:
            document = self.control.room(self.workspace.rooms.get(name) or name)
        except NotFound:
            raise DemoError(f"no room {name!r}; :rooms lists them") from None
        except (ControlError, httpx.HTTPError) as exc:
            raise DemoError(f"cannot look up room {name!r}: {exc}") from None
        kind = str(document.get("t") or "c")
        peer = None
        if kind == "d":
            others = [u for u in document.get("usernames") or [] if u != self.user.username]
            peer = str(others[0]) if others else self.user.username
        return RoomRef(str(document["_id"]), str(document.get("name") or name), kind, peer)

    # actions

    def apply(self, action: Action) -> None:
        """Run a meta-command (anything but Send/Quit/Skip). Problems raise DemoError."""
        match action:
            case SwitchUser(username=username):
                user = self.workspace.user(username)
                if user.username == self.bot_username:
                    raise DemoError(f"{self.bot_username} is the bot itself: it ignores its own messages")
                self.user = user
                if self.room is not None and self.room.kind == "d":
                    self.enter(self.resolve_room(None))  # your own DM with the bot, not the previous user's
                self.out(f"== you are {self.user.username} in {self._where()}")
            case SwitchRoom(name=name):
                self.enter(self.resolve_room(name), history=self.history_on_enter)
                self.out(f"== you are {self.user.username} in {self._where()}")
            case Thread(on=True):
                last = self._last_sent.get(self.room.id) if self.room else None
                if last is None:
                    raise DemoError("send a command in this room first; :thread continues in its thread")
                self.thread_id = str(last.get("tmid") or last["_id"])
                self.out(f"== you are {self.user.username} in {self._where()}")
            case Thread(on=False):
                self.thread_id = None
                self.out(f"== you are {self.user.username} in {self._where()}")
            case Show(what="users"):
                rows = [
                    (("* " if u.username == self.user.username else "  ") + u.username, ", ".join(u.roles))
                    for u in self.workspace.users.values()
                ]
                for line in table(("user", "roles"), rows):
                    self.out(line)
            case Show(what="rooms"):
                rows = [(f"#{name}", room_id) for name, room_id in self.workspace.rooms.items() if ":" not in name]
                for line in table(("room", "id"), rows):
                    self.out(line)
                self.out(f"  (and :dm for your direct messages with {self.bot_username})")
            case Show(what="integrations"):
                try:
                    documents = self.control.integrations()
                except (ControlError, httpx.HTTPError) as exc:
                    raise DemoError(f"cannot list the integrations: {exc}") from None
                for line in integrations_table(documents):
                    self.out(line)
            case Show(what="help"):
                for line in help_lines():
                    self.out(line)
            case Flood(name=name, count=count):
                try:
                    flooded = flood(self.control, name, count)
                except DemoTrafficError as exc:
                    raise DemoError(str(exc)) from None
                self.out(f"== {flooded.describe()}")
                self.flooded = flooded
            case Invalid(problem=problem):
                raise DemoError(problem)
            case _:
                raise DemoError(f"not a meta-command: {action!r}")

    def send(self, text: str) -> dict[str, Any]:
        if self.room is None:
            raise DemoError("not in a room; :room general")
        problem = self.health()
        if problem is not None:
            raise DemoError(problem)
        message_id = new_message_id()
        # Marked before sending, so the watcher never echoes what you just typed.
        self.feed.mark_shown({"_id": message_id, "msg": text})
        sent = self.api.send(self.user, self.room.id, text, thread_id=self.thread_id, message_id=message_id)
        self.feed.mark_shown(sent)
        self._last_sent[self.room.id] = sent
        return sent

    def show(self, message: Mapping[str, Any], change: Change) -> None:
        if self.room is not None:
            # One write per message: a terminal redraws the prompt once, under the whole message.
            self.out("\n".join(render_message(message, self.room, change)))

    def prompt(self) -> str:
        assert self.room is not None
        return prompt(self.user.username, self.room, self.thread_id is not None)

    def _where(self) -> str:
        assert self.room is not None
        return self.room.label + (" (in the thread of your last command)" if self.thread_id else "")


# --- script mode ------------------------------------------------------------------------------------


def run_script(session: ChatSession, lines: Iterable[str], *, timeout: float, quiet: float = QUIET_AFTER_ANSWER) -> int:
    """Run each line; wait for the bot's answer to each sent line. 1 if any went unanswered.

    After the first answer the room is watched until it has been quiet for `quiet` seconds, so a
    reply in several messages (or one edited right away) lands in the transcript before the next line.
    """
    failures = 0
    for raw in lines:
        action = parse_line(raw, script=True)
        if isinstance(action, Skip):
            continue
        if isinstance(action, Quit):
            break
        try:
            if isinstance(action, Send):
                _drain(session)
                sent = session.send(action.text)
                session.show(sent, "new")
                if not action.expect_answer:
                    _await_answer(session, sent, quiet, quiet)  # just show what the room says meanwhile
                elif not _await_answer(session, sent, timeout, quiet):
                    session.out(f"!! no answer from {session.bot_username} within {timeout:g} s")
                    failures += 1
            else:
                session.out(raw.strip())
                session.apply(action)
                if isinstance(action, Flood) and _notice_due(session):
                    # The bot's flood notice comes while the webhook's messages arrive: shown before
                    # the script's next line, however busy the machine (a script is a transcript).
                    _await_answer(session, {}, timeout, quiet)
        except DemoError as exc:
            session.out(f"!! {exc}")
            failures += 1
    _drain(session)
    return 1 if failures else 0


def _notice_due(session: ChatSession) -> bool:
    """Whether the last `:flood` posted enough into the room being watched for the bot's flood
    guard to notice it (the demo's bot runs with the default `BOT_FLOOD_THRESHOLD`)."""
    flooded, room = session.flooded, session.room
    return (
        flooded is not None
        and room is not None
        and flooded.room == room.label
        and 0 < FLOOD_NOTICE_AT <= flooded.posted
    )


def _drain(session: ChatSession) -> None:
    """Show what arrived since the last wait (late answers, other people)."""
    _room, seen = session.feed.poll(0)
    for item in seen:
        session.show(item.message, item.change)


def _await_answer(session: ChatSession, sent: Mapping[str, Any], timeout: float, quiet: float) -> bool:
    """Show the room until the bot has answered and then been quiet for a moment, or `timeout`."""
    deadline = time.monotonic() + timeout
    answered = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return answered
        problem = session.health()
        if problem is not None:
            raise DemoError(problem)
        # Short polls until the first answer too, so a bot that dies mid-wait is noticed.
        _room, seen = session.feed.poll(min(remaining, quiet if answered else 1.0))
        if not seen and answered:
            return True
        for item in seen:
            session.show(item.message, item.change)
            if item.username == session.bot_username and item.message.get("_id") != sent.get("_id"):
                answered = True


# --- interactive mode -------------------------------------------------------------------------------


class Terminal:
    """Writes lines without trampling the line being typed: when a message arrives while you type,
    the prompt and your half-typed text are drawn again below it."""

    def __init__(self, stream: TextIO, readline_module: Any = None) -> None:
        self._stream = stream
        self._readline = readline_module
        self._lock = threading.Lock()
        self._prompt: str | None = None
        self._redraw = bool(getattr(stream, "isatty", lambda: False)())

    def write(self, text: str) -> None:
        """Write `text` (one or more lines) and end it with a newline."""
        with self._lock:
            if self._prompt is not None and self._redraw:
                typed = self._readline.get_line_buffer() if self._readline is not None else ""
                self._stream.write(f"\r\x1b[K{text}\n{self._prompt}{typed}")
            else:
                self._stream.write(text + "\n")
            self._stream.flush()

    def read(self, text: str) -> str:
        with self._lock:
            self._prompt = text
        try:
            return input(text)
        finally:
            with self._lock:
                self._prompt = None


def run_interactive(session: ChatSession, terminal: Terminal) -> int:
    """Read lines until :quit, Ctrl-D or Ctrl-C while a watcher thread shows the room."""
    stop = threading.Event()
    failure: list[str] = []

    def watch() -> None:
        while not stop.is_set():
            try:
                room, seen = session.feed.poll(0.5)
            except DemoError as exc:
                failure.append(str(exc))
                terminal.write(f"!! {exc}")
                return
            for item in seen:
                if room is not None:
                    terminal.write("\n".join(render_message(item.message, room, item.change)))
            problem = session.health()
            if problem is not None:
                failure.append(problem)
                terminal.write(f"!! {problem}; press Enter to leave")
                return

    watcher = threading.Thread(target=watch, name="demo-room-watcher", daemon=True)
    watcher.start()
    try:
        while not failure:
            try:
                line = terminal.read(session.prompt())
            except (EOFError, KeyboardInterrupt):
                terminal.write("")
                break
            action = parse_line(line)
            if isinstance(action, Quit):
                break
            if isinstance(action, Skip):
                continue
            try:
                if isinstance(action, Send):
                    session.send(action.text)
                else:
                    session.apply(action)
            except DemoError as exc:
                terminal.write(f"!! {exc}")
    finally:
        stop.set()
        watcher.join(timeout=2.0)
    return 1 if failure else 0
