"""The machinery of the end-to-end tests: a seeded sandbox over real sockets, the real bot process.

Why a subprocess: the point of these tests is the product as an operator runs it, the installed
`integrations-bot run` console script with nothing but its environment, talking REST and DDP to a
server over loopback sockets. The sandbox runs in the test process (its control API is in-process
and synchronous), the bot in its own process with its own environment and working directory (so no
`.env` file of the checkout leaks in).

How a test waits without sleeping: the bot's reply to a command has an id derived from the
command's id with the key in the bot's state file (`bot.rocketchat.message_ids`), so `Chat.command` reads
that key (`bot.state.store.read_message_ids`, read-only, while the bot runs) and waits for exactly that
message, posted by the bot, on the sandbox's message log (a condition variable, no polling). The
bot's JSON log lines are read by a thread and can be awaited the same way (`BotProcess.wait_for_log`).

Every request body the bot sends to `integrations.update` and `chat.sendMessage` is recorded by the
sandbox (`SandboxControl.record_requests`) and validated against Rocket.Chat's own request schemas
(`tests/schemas`), after each command and once more when the workspace stops.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from bot.state.store import read_message_ids
from sandbox.config import SandboxConfig
from sandbox.control import SandboxControl, UserCredentials
from sandbox.seed import seed_demo
from sandbox.server import SandboxServer
from tests.schema_support import SCHEMAS, ajv_to_json_schema
from tests.secret_watch import WATCH

REPO = Path(__file__).resolve().parents[2]
BOT_USERNAME = "integrations-bot"
# xdist group of the tests that share the session `workspace` fixture (one sandbox, one bot).
SHARED_GROUP = "e2e-shared-workspace"
RECORDED = ("integrations.update", "chat.sendMessage")
# A functional deadline for one answer (the bot answers in well under a second on loopback).
REPLY_TIMEOUT = 10.0
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0


_names = itertools.count(1)


def unique_name(prefix: str) -> str:
    """`unique_name("Guggy")` → `Guggy 7f3a1c 12`: a name no other test or example uses."""
    return f"{prefix} {secrets.token_hex(3)} {next(_names)}"


def bot_executable() -> str:
    """The installed console script next to the interpreter running the tests (.venv/bin)."""
    candidate = Path(sys.executable).with_name("integrations-bot")
    if not candidate.exists():
        raise RuntimeError(f"the console script is not installed next to {sys.executable} (pip install -e .)")
    return str(candidate)


# --- Rocket.Chat's request schemas ----------------------------------------------------------------


def schema_validator(endpoint: str) -> Draft202012Validator:
    """A strict validator (no coercion) for one endpoint's request body (AJV dialect: 2020-12)."""
    schema = ajv_to_json_schema(json.loads((SCHEMAS / f"{endpoint}.json").read_text()))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


class BodyChecker:
    """Validates the bodies the sandbox recorded since the last check (per endpoint)."""

    def __init__(self) -> None:
        self.validators = {endpoint: schema_validator(endpoint) for endpoint in RECORDED}
        self.checked: dict[str, int] = dict.fromkeys(RECORDED, 0)
        self._lock = threading.Lock()

    def check(self, control: SandboxControl) -> None:
        with self._lock:
            for endpoint, validator in self.validators.items():
                bodies = control.recorded_requests(endpoint)
                for body in bodies[self.checked[endpoint] :]:
                    errors = sorted(validator.iter_errors(body), key=str)
                    assert not errors, f"{endpoint} body fails the official schema: {errors[0].message}\n{body}"
                self.checked[endpoint] = len(bodies)


# --- the bot process -------------------------------------------------------------------------------


class BotProcess:
    """`integrations-bot run` in its own process; its stderr JSON log lines collected by a thread."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.process = subprocess.Popen(
            [bot_executable(), "run"],
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self._lines: list[str] = []
        self._stdout: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stderr, self._lines), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stdout, self._stdout), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        # Everything it writes is checked for secrets at the end of the session (tests/secret_watch.py).
        WATCH.add_process(f"the output of bot process {self.process.pid}", lambda: self.output, self._finished)

    def _finished(self) -> bool:
        return self.process.poll() is not None and not any(r.is_alive() for r in self._readers)

    def _read(self, stream: Any, sink: list[str]) -> None:
        for line in stream:
            with self._changed:
                sink.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    # logs

    @property
    def output(self) -> str:
        """Everything the process wrote so far, stdout and stderr."""
        with self._changed:
            return "\n".join([*self._stdout, *self._lines])

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log events so far (a line that is not JSON shows as `{"event": <line>}`)."""
        with self._changed:
            lines = list(self._lines)
        return [_parse_log(line) for line in lines]

    def mark(self) -> int:
        """A position in the log, for `wait_for_log(after=...)`."""
        with self._changed:
            return len(self._lines)

    def wait_for_log(
        self,
        event: str,
        *,
        after: int = 0,
        where: Callable[[dict[str, Any]], bool] = lambda _e: True,
        timeout: float = START_TIMEOUT,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self._lines[after:]:
                    entry = _parse_log(line)
                    if entry.get("event") == event and where(entry):
                        return entry
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and not any(r.is_alive() for r in self._readers)):
                    raise TimeoutError(f"no {event!r} log event; the bot wrote:\n" + "\n".join(self._lines[-30:]))
                self._changed.wait(min(remaining, 0.5))

    def command_events(self, message_id: str) -> list[dict[str, Any]]:
        """The dispatcher's one `command` event per command it ran, for this message."""
        return [e for e in self.logs() if e.get("event") == "command" and e.get("message_id") == message_id]

    # lifecycle

    def wait_ready(self) -> None:
        self.wait_for_log("bot.ready")

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then the exit status (killed and reported as -9 if it does not stop)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            return -9
        finally:
            for reader in self._readers:
                reader.join(5)

    def wait_exit(self, timeout: float) -> int:
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code


def _parse_log(line: str) -> dict[str, Any]:
    try:
        parsed = json.loads(line)
    except ValueError:
        return {"event": line}
    return parsed if isinstance(parsed, dict) else {"event": line}


def bot_environment(url: str, workdir: Path, **settings: str) -> dict[str, str]:
    """Only what the bot needs: its settings, plus PATH/HOME for the interpreter, and this
    checkout first on the import path: the console script may have been installed (editable)
    from another checkout (a git worktree sharing the virtualenv), whose code it would run."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "ROCKETCHAT_URL": url,
        "BOT_STATE_DB": str(workdir / "state.sqlite3"),
        "BOT_LOG_FORMAT": "json",
    }
    env.update(settings)
    return env


# --- chat as the test's users -------------------------------------------------------------------------


class Chat:
    """Post as any user and wait for the bot's answer to that very message (the bot's state file
    is `state_db`: its key gives the answer's ids)."""

    def __init__(self, control: SandboxControl, bodies: BodyChecker, state_db: Path) -> None:
        self.control = control
        self.bodies = bodies
        self.state_db = state_db

    def answer_ids(self, message: dict[str, Any]) -> tuple[str, ...]:
        """The ids the bot's answer to `message` may have (read each time: a test may give the bot
        another state file)."""
        return read_message_ids(self.state_db).answer(message["_id"])

    def post(self, user: str, room: str, text: str, *, tmid: str | None = None, tshow: bool = False) -> dict[str, Any]:
        return self.control.post_message(user, room, text, tmid=tmid, tshow=tshow)

    def reply_to(self, message: dict[str, Any], *, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        reply = self.control.wait_for_message(message["rid"], self._answer_of(message), timeout=timeout)
        self.bodies.check(self.control)
        return reply

    def command(
        self, user: str, room: str, text: str, tmid: str | None = None, *, timeout: float = REPLY_TIMEOUT
    ) -> dict[str, Any]:
        """Post `text` as `user` in `room` (in thread `tmid`) and return the bot's reply message."""
        return self.reply_to(self.post(user, room, text, tmid=tmid), timeout=timeout)

    def has_reply(self, message: dict[str, Any]) -> bool:
        return any(map(self._answer_of(message), self.control.messages(message["rid"])))

    def _answer_of(self, message: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
        wanted = set(self.answer_ids(message))
        return lambda m: m["_id"] in wanted and m["u"]["username"] == BOT_USERNAME


# --- a workspace: sandbox + seed + bot ------------------------------------------------------------------


@dataclass
class Workspace:
    server: SandboxServer
    seed: dict[str, Any]
    bot: BotProcess
    chat: Chat
    bodies: BodyChecker
    workdir: Path
    extra_users: dict[str, UserCredentials] = field(default_factory=dict)

    @property
    def control(self) -> SandboxControl:
        return self.server.control

    @property
    def bot_credentials(self) -> dict[str, Any]:
        return dict(self.seed["users"][BOT_USERNAME])

    def token(self, username: str) -> str:
        return str(self.seed["users"][username]["authToken"])

    def user_id(self, username: str) -> str:
        return str(self.control.user(username)["_id"])


def start_sandbox(config: SandboxConfig | None = None) -> tuple[SandboxServer, dict[str, Any]]:
    """A running sandbox with the demo workspace (see sandbox.seed) plus a post-as user without the
    bot role (`hookbot`) and a public room the bot is not in (`lobby`); recording request bodies."""
    server = SandboxServer(config=config or SandboxConfig())
    seed = seed_demo(server.store)
    server.start()
    control = server.control
    control.create_user("hookbot", roles=["user"], name="Hook Bot")
    control.create_room("lobby", members=["admin", "alice", "owen"], owner="admin")
    control.record_requests(RECORDED)
    return server, seed


@contextmanager
def running_workspace(
    workdir: Path,
    config: SandboxConfig | None = None,
    *,
    before_start: Callable[[SandboxControl], None] | None = None,
    **settings: str,
) -> Iterator[Workspace]:
    """A seeded sandbox and a ready bot process; on exit: SIGTERM (must exit 0), last schema sweep.
    `before_start` prepares the server (its settings, say) before the bot starts."""
    server, seed = start_sandbox(config)
    try:
        if before_start is not None:
            before_start(server.control)
        creds = seed["users"][BOT_USERNAME]
        env = bot_environment(
            server.url,
            workdir,
            ROCKETCHAT_USER_ID=creds["userId"],
            ROCKETCHAT_AUTH_TOKEN=creds["authToken"],
            **settings,
        )
        bot = BotProcess(env, workdir)
        bodies = BodyChecker()
        chat = Chat(server.control, bodies, Path(env["BOT_STATE_DB"]))
        workspace = Workspace(server, seed, bot, chat, bodies, workdir)
        try:
            bot.wait_ready()
            yield workspace
        finally:
            code = bot.terminate()
        assert code == 0, f"the bot exited with {code}:\n{bot.output[-3000:]}"
        assert creds["authToken"] not in bot.output  # its own token never shows in its output
        bodies.check(server.control)
    finally:
        server.stop()


# --- proving that nothing happened -------------------------------------------------------------------

# After a barrier command was answered, how long an answer to an ignored message may still take to
# show up before we call it absent (the barrier makes this a formality, not the proof).
IGNORED_GRACE = 0.3


def assert_ignored(workspace: Workspace, messages: list[dict[str, Any]], documents: list[dict[str, Any]]) -> None:
    """Nothing came of `messages`: no answer, no `command` log line, `documents` unchanged.

    The proof is a barrier: a later command in a room the bot is in gets its answer, and the stream
    delivers messages in order to a sequential intake, so the earlier ones were seen first."""
    chat, control = workspace.chat, workspace.control
    barrier = chat.post("admin", "general", "!integration help")
    chat.reply_to(barrier)
    # A command's log lines follow its answer (bot/logs.py): once the barrier's own line has been
    # read, so have the lines of every command the bot answered before it.
    workspace.bot.wait_for_log("command", where=lambda e: e.get("message_id") == barrier["_id"])
    for message in messages:
        forbidden = set(chat.answer_ids(message))
        try:
            answer = control.wait_for_message(
                message["rid"], lambda m, wanted=forbidden: m["_id"] in wanted, timeout=IGNORED_GRACE
            )
        except TimeoutError:
            pass
        else:
            raise AssertionError(f"{message['msg']!r} was answered: {answer['msg']!r}")
        assert workspace.bot.command_events(message["_id"]) == []
    for document in documents:
        assert control.integration(document["_id"]) == document
