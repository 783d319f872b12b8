"""Several real `integrations-bot run` processes on one real PostgreSQL: the replicas of issue 15.

`Replicas` is one seeded sandbox (`start_sandbox`) and any number of bot processes, each in a
working directory of its own, all with the same credentials and the same `BOT_STATE_URL` (a fresh
database of the test's `postgres_url`), a short claim lease (`LEASE` seconds: a dead replica's
commands are taken over within seconds) and, on request, an HTTP port each for `/readyz`.
A replica can be started, killed with SIGKILL, or stopped with SIGTERM (which must exit 0).

How a test finds answers while replicas come and go and the database restarts: every replica
derives its answers' ids from one key stored in the shared database (`read_message_ids`), read
once after the first replica created it and kept (`ReplicaChat`), so waiting for an answer needs
no database. Which replica ran a command, and how often, is read from the shared database (claims
with their owner, audit rows) and from each process's `command` log events; what reached Rocket.Chat
from the sandbox's record of `integrations.update` bodies.

`People` drives a crowd: each person has an incoming and an outgoing integration of their own with
every optional field set, a room shared with the bot, and a thread there; each sends their script
of commands one after the other (waiting for each answer), all people at once (one thread each).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from chaos_support import own_integrations
from e2e_support import (
    BOT_USERNAME,
    REPLY_TIMEOUT,
    START_TIMEOUT,
    BodyChecker,
    BotProcess,
    Chat,
    bot_environment,
    start_sandbox,
)

from bot.rocketchat.message_ids import MessageIds
from bot.state.store import read_message_ids
from sandbox.config import SandboxConfig
from sandbox.control import SandboxControl

LEASE = 3.0  # BOT_CLAIM_LEASE, seconds: the shortest the bot allows; a take-over comes within ~LEASE + LEASE/3
# An answer's deadline when a replica may have died with the command: the lease runs out, the next
# take-over tick decides it (every LEASE/3), then it runs: a functional bound, not a benchmark.
TAKEOVER_TIMEOUT = 30.0
# The server processes of statements waiting for a lock on the shared database's `audit` table: a
# test holding that lock (LOCK TABLE audit IN SHARE MODE) sees a command between its change and
# its audit row, and kills the replica there (tests/e2e/test_e2e_extend_resumed.py).
WAITING_ON_AUDIT = "SELECT pid FROM pg_locks WHERE relation = 'audit'::regclass AND NOT granted"
# Written by the server on every update (or derived by it): never compared.
SERVER_MANAGED = ("_updatedAt", "_updatedBy", "scriptError")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ReplicaChat(Chat):
    """`Chat` whose answer ids come from the key read once from the shared database (the key
    never changes; reading it again would need the database, which a test may have stopped)."""

    def __init__(self, control: SandboxControl, bodies: BodyChecker, state_url: str) -> None:
        super().__init__(control, bodies, Path("unused"))
        self.state_url = state_url
        self._ids: MessageIds | None = None
        self._lock = threading.Lock()

    @property
    def ids(self) -> MessageIds:
        with self._lock:
            if self._ids is None:
                self._ids = read_message_ids(self.state_url)
            return self._ids

    def answer_ids(self, message: dict[str, Any]) -> tuple[str, ...]:
        return self.ids.answer(message["_id"])

    def answers_to(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """The bot's messages at the ids of `message`'s answer, as stored now (the notice that it
        was not run, "I can't record commands right now …", takes those ids too)."""
        answers = set(self.answer_ids(message))
        return [
            m
            for m in self.control.messages(message["rid"])
            if m["_id"] in answers and m["u"]["username"] == BOT_USERNAME
        ]


class Replicas:
    """One sandbox, one shared database, the bot processes started on it (see the module docstring)."""

    def __init__(
        self, root: Path, state_url: str, *, config: SandboxConfig | None = None, http: bool = False, **settings: str
    ) -> None:
        self.root = root
        self.state_url = state_url
        self.http = http
        self.settings = settings
        self.server, self.seed = start_sandbox(config)
        self.bodies = BodyChecker()
        self.chat = ReplicaChat(self.server.control, self.bodies, state_url)
        self.bots: list[BotProcess] = []
        self.ports: dict[int, int] = {}  # pid -> BOT_HTTP_PORT

    @property
    def control(self) -> SandboxControl:
        return self.server.control

    def alive(self) -> list[BotProcess]:
        return [bot for bot in self.bots if bot.process.poll() is None]

    # --- the processes ---------------------------------------------------------------------------

    def launch(self) -> BotProcess:
        """Start one more replica (not waiting for it: see `start`)."""
        creds = self.seed["users"][BOT_USERNAME]
        workdir = self.root / f"replica-{len(self.bots) + 1}"
        workdir.mkdir()
        settings = {
            "ROCKETCHAT_USER_ID": creds["userId"],
            "ROCKETCHAT_AUTH_TOKEN": creds["authToken"],
            "BOT_STATE_URL": self.state_url,
            "BOT_CLAIM_LEASE": str(LEASE),
            **self.settings,
        }
        port = _free_port() if self.http else None
        if port is not None:
            settings["BOT_HTTP_PORT"] = str(port)
        env = bot_environment(self.server.url, workdir, **settings)
        del env["BOT_STATE_DB"]  # the shared database only: no SQLite file beside it
        bot = BotProcess(env, workdir)
        self.bots.append(bot)
        if port is not None:
            self.ports[bot.process.pid] = port
        return bot

    def start(self, count: int = 1) -> list[BotProcess]:
        """Start `count` replicas at once (they migrate the new database together) and wait until
        each is ready."""
        started = [self.launch() for _ in range(count)]
        for bot in started:
            bot.wait_ready()
        return started

    def kill(self, bot: BotProcess) -> None:
        """SIGKILL: no draining, no released claims; whatever it was doing is cut."""
        bot.process.kill()
        bot.wait_exit(START_TIMEOUT)

    @contextmanager
    def paused(self, bot: BotProcess) -> Iterator[None]:
        """SIGSTOP `bot` for the block (SIGCONT after): whatever the others claim meanwhile is
        theirs. Keep it far shorter than the lease while the paused one holds claims."""
        os.kill(bot.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(bot.process.pid, signal.SIGCONT)

    def close(self) -> None:
        """SIGTERM every replica still running (each must exit 0), check the bodies, stop the sandbox."""
        try:
            codes = {bot.process.pid: bot.terminate() for bot in self.alive()}
            failed = {pid: code for pid, code in codes.items() if code != 0}
            assert not failed, f"replicas exited with {failed}:\n" + "\n".join(b.output[-2000:] for b in self.bots)
            token = self.seed["users"][BOT_USERNAME]["authToken"]
            assert not any(token in bot.output for bot in self.bots)
            self.bodies.check(self.control)
        finally:
            self.server.stop()

    # --- health ----------------------------------------------------------------------------------

    def readyz(self, bot: BotProcess) -> int:
        """The HTTP status of the replica's `/readyz` (0: nothing answers)."""
        url = f"http://127.0.0.1:{self.ports[bot.process.pid]}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    def wait_readyz(self, bot: BotProcess, status: int, timeout: float = TAKEOVER_TIMEOUT) -> None:
        wait_until(lambda: self.readyz(bot) == status, timeout, f"/readyz of {bot.process.pid} never said {status}")

    # --- the shared database ---------------------------------------------------------------------

    def rows(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.state_url, connect_timeout=5) as connection:
            return list(connection.execute(query, params).fetchall())

    def unfinished_claims(self, bot: BotProcess) -> list[str]:
        """The commands `bot` has claimed and not finished (a claim's owner is `host/pid/random`)."""
        rows = self.rows(
            "SELECT message_id FROM processed_messages WHERE status = 'claimed' AND split_part(owner, '/', 2) = %s",
            (str(bot.process.pid),),
        )
        return [str(row[0]) for row in rows]

    def claim_owner(self, message_id: str) -> str | None:
        rows = self.rows("SELECT owner FROM processed_messages WHERE message_id = %s", (message_id,))
        return str(rows[0][0]) if rows else None

    def audit_counts(self) -> Counter[str]:
        """Audit rows per command message id."""
        return Counter(str(row[0]) for row in self.rows("SELECT message_id FROM audit WHERE message_id IS NOT NULL"))

    def writes(self) -> Counter[str]:
        """`integrations.update` bodies the server received, per integration id."""
        return Counter(body["integrationId"] for body in self.control.recorded_requests("integrations.update"))

    def command_runs(self, message_id: str) -> int:
        """How many `command` log events the replicas wrote for `message_id` (complete once they exited)."""
        return sum(len(bot.command_events(message_id)) for bot in self.bots)


@contextmanager
def running(root: Path, state_url: str, **options: Any) -> Iterator[Replicas]:
    """`Replicas(root, state_url, **options)` for a test's span, closed (and checked) after it."""
    replicas = Replicas(root, state_url, **options)
    try:
        yield replicas
    except BaseException:
        # What each replica logged, shown with the failure (pytest prints a failed test's output):
        # a timing failure under load is otherwise told only by what the test waited for.
        for bot in replicas.bots:
            print(f"--- replica pid {bot.process.pid}, the end of its output:\n{bot.output[-12000:]}")
        raise
    finally:
        replicas.close()


def killed_before_its_audit_row(
    replicas: Replicas, bot: BotProcess, post: Callable[[], dict[str, Any]], changed: Callable[[], bool]
) -> dict[str, Any]:
    """The command `post` sends, cut by SIGKILL once its change is made (`changed`) and before its
    audit row: a lock on the shared database's `audit` table holds that row's INSERT until the bot
    is killed; the dead client's statement is then ended (a server process waiting on a lock does
    not notice its client is gone until it gets the lock: ended here, as the OS would have cut it)."""
    with psycopg.connect(replicas.state_url, autocommit=False) as holder:
        holder.execute("LOCK TABLE audit IN SHARE MODE")  # reads pass; the audit row's INSERT waits
        command = post()
        wait_until(
            lambda: changed() and bool(replicas.rows(WAITING_ON_AUDIT)),
            REPLY_TIMEOUT,
            "the command never reached its audit row",
        )
        replicas.kill(bot)
        for (pid,) in replicas.rows(WAITING_ON_AUDIT):
            replicas.rows("SELECT pg_terminate_backend(%s)", (pid,))
        holder.rollback()
    return command


def owner_pid(owner: str | None) -> int | None:
    return int(owner.split("/")[1]) if owner else None


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


# --- a crowd of people ------------------------------------------------------------------------------


@dataclass
class Person:
    name: str
    room: str
    thread: str  # a message of theirs in `room` that their thread replies go under
    incoming: dict[str, Any]
    outgoing: dict[str, Any]


@dataclass
class Sent:
    person: Person
    message: dict[str, Any]
    expect: str  # what the answer says when it worked
    integration_id: str | None  # the integration it changes (None: a read)
    answer: dict[str, Any] | None = None


# One step of a person's script: the command text, the answer's expected start, whether it changes
# the integration, from the person and the integration.
Step = Callable[[Person, dict[str, Any]], tuple[str, str, bool]]


@dataclass
class People:
    replicas: Replicas
    people: list[Person]
    originals: dict[str, dict[str, Any]]
    sent: list[Sent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    failures: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, replicas: Replicas, count: int, *, rooms: int = 3) -> People:
        control = replicas.control
        names = [f"person{index:02d}" for index in range(count)]
        for name in names:
            control.create_user(name, roles=["user", "admin"])
        for number in range(rooms):
            members = [BOT_USERNAME, *(n for i, n in enumerate(names) if i % rooms == number)]
            control.create_room(f"replicas-{number}", members=members, owner="admin")
        people = []
        for index, name in enumerate(names):
            room = f"replicas-{index % rooms}"
            incoming, outgoing = own_integrations(
                control, "Replica", index, room, name, token=f"replica-token-{index:02d}"
            )
            thread = control.post_message(name, room, f"thread of {name}")["_id"]
            people.append(Person(name, room, thread, incoming, outgoing))
        originals = {doc["_id"]: doc for doc in control.integrations()}
        return cls(replicas, people, originals)

    def drive(self, person: Person, steps: list[Step], *, timeout: float) -> None:
        """One person's script, alternating their two integrations, each command answered before the next."""
        control, chat = self.replicas.control, self.replicas.chat
        try:
            for number, step in enumerate(steps):
                integration = (person.incoming, person.outgoing)[number % 2]
                text, expect, changes = step(person, integration)
                thread = person.thread if number % 3 == 2 else None
                message = control.post_message(person.name, person.room, text, tmid=thread)
                sent = Sent(person, message, expect, integration["_id"] if changes else None)
                with self.lock:
                    self.sent.append(sent)
                wanted = set(chat.answer_ids(message))
                sent.answer = control.wait_for_message(
                    person.room, lambda m, w=wanted: m["_id"] in w and m["u"]["username"] == BOT_USERNAME, timeout
                )
        except Exception as exc:  # reported by `run`: a thread's exception would be lost
            with self.lock:
                self.failures.append(f"{person.name}: {type(exc).__name__}: {exc}")

    def run(self, steps: list[Step], *, timeout: float, meanwhile: Callable[[], None] = lambda: None) -> None:
        """Every person's script at once; `meanwhile` runs in this thread while they go."""
        threads = [
            threading.Thread(target=self.drive, args=(p, steps), kwargs={"timeout": timeout}, daemon=True)
            for p in self.people
        ]
        for thread in threads:
            thread.start()
        try:
            meanwhile()
        finally:
            for thread in threads:
                thread.join(timeout * len(steps))
        assert not any(t.is_alive() for t in threads), "a person is still waiting"
        assert not self.failures, self.failures

    def answered(self) -> int:
        with self.lock:
            return sum(1 for s in self.sent if s.answer is not None)

    # --- the checks ---------------------------------------------------------------------------

    def check_answers(self) -> None:
        """Each command has one answer, saying what it expects, in its room and thread, and the bot
        posted nothing else in these rooms."""
        chat = self.replicas.chat
        wrong = [
            (s.message["msg"], (s.answer or {}).get("msg", "")[:200])
            for s in self.sent
            if s.expect not in (s.answer or {}).get("msg", "")
        ]
        assert not wrong, wrong
        expected = {answer: s for s in self.sent for answer in chat.answer_ids(s.message)}
        rooms = {s.message["rid"] for s in self.sent}
        posted = [m for r in rooms for m in self.replicas.control.messages(r) if m["u"]["username"] == BOT_USERNAME]
        assert {m["_id"] for m in posted} <= set(expected), "the bot posted something that answers no command"
        answers = Counter(expected[m["_id"]].message["_id"] for m in posted)
        assert set(answers) == {s.message["_id"] for s in self.sent} and set(answers.values()) == {1}, answers
        for m in posted:
            command = expected[m["_id"]]
            assert (m["rid"], m.get("tmid")) == (command.message["rid"], command.message.get("tmid"))

    def check_applied_once(self) -> None:
        """Each change has one audit row and one write reached the server; a read has neither.
        Checked once every command's claim is closed: a command's audit row and the close of its
        claim are its book-keeping after the answer (commands/followups.py), which the last answers
        seen may still be doing (seen in CI under load)."""
        ids = [s.message["_id"] for s in self.sent]
        wait_until(
            lambda: (
                not self.replicas.rows(
                    "SELECT 1 FROM processed_messages WHERE message_id = ANY(%s) AND status = 'claimed'", (ids,)
                )
            ),
            TAKEOVER_TIMEOUT,
            "a command's claim was never closed",
        )
        audit, writes = self.replicas.audit_counts(), self.replicas.writes()
        for s in self.sent:
            assert audit.get(s.message["_id"], 0) == (1 if s.integration_id else 0), (s.message["msg"], audit)
        changes = Counter(s.integration_id for s in self.sent if s.integration_id)
        assert dict(writes) == dict(changes), f"writes per integration {dict(writes)}, changes {dict(changes)}"

    def check_documents(self, expected: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Every integration is `expected(original)`, field for field."""
        for integration_id, original in self.originals.items():
            want, now = comparable(expected(original)), comparable(self.replicas.control.integration(integration_id))
            assert now == want, f"{original['name']}: " + json.dumps(
                {k: (want.get(k), now.get(k)) for k in set(want) | set(now) if want.get(k) != now.get(k)}
            )


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored integration without what the server rewrites on every save; a null is the same as an
    absent key, and `skipTranspile` false as absent (contract §2.4.4)."""
    out = {k: v for k, v in doc.items() if k not in SERVER_MANAGED and v is not None}
    out["scriptCompiled"] = bool(out.get("scriptCompiled"))
    out["skipTranspile"] = out.get("skipTranspile") is True
    return out
