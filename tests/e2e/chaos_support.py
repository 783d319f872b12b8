"""A crowd of users commanding the real bot process while the server misbehaves (chaos and soak tests).

The workspace: the seeded demo sandbox plus `users` people, each with the "own integrations"
rights and two integrations of their own (an incoming webhook and an outgoing one with every
optional field set: script, trigger words, retry settings, alias, emoji, avatar, token), rooms
they share with the bot, and a DM with it. Each person is one thread that sends commands one
after the other and waits for the answer to each (by its ids, from the key in the bot's state
file) before sending the next, so
each integration sees a known sequence; the people run in parallel.

What a person records for each command is what the answer said (`Sent.verdict`). `verify`
then checks the outcome against the sandbox's stored documents and the bot's audit log:
- every command got exactly one answer, with an id of its answer's chain, in its room and thread;
- every command the answer calls done was applied exactly once (one audit row with its message
  id, the integration flipped), every one it calls not done was applied zero times;
- every integration ends in the state its answers imply, with every other field unchanged.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from e2e_support import BotProcess, bot_environment

from bot.rocketchat.message_ids import MessageIds
from bot.state.store import read_message_ids
from sandbox.control import SandboxControl, UserCredentials
from sandbox.seed import OWNER_ROLE, seed_demo
from sandbox.server import SandboxServer

BOT = "integrations-bot"
# Written by the server on every update: everything else must survive every command.
SERVER_MANAGED = {"enabled", "_updatedAt", "_updatedBy", "scriptError"}
SCRIPT = "class Script {\n  process_incoming_request({ request }) { return { content: request.content }; }\n}\n"


@dataclass
class Person:
    index: int
    credentials: UserCredentials
    room: str  # a channel they share with the bot
    dm: str  # the DM room id with the bot
    parent: str  # a message of theirs in `room`, to reply to in a thread
    incoming: dict[str, Any]
    outgoing: dict[str, Any]

    @property
    def name(self) -> str:
        return self.credentials.username


@dataclass
class Sent:
    person: str
    message: dict[str, Any]
    integration_id: str
    action: str
    thread: str | None
    answer: dict[str, Any] | None = None
    verdict: str = "no answer"  # "done", "not done" or something unexpected


@dataclass
class Crowd:
    server: SandboxServer
    seed: dict[str, Any]
    people: list[Person]
    secrets: set[str]
    originals: dict[str, dict[str, Any]]
    sent: list[Sent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    state_db: Path | str | None = None  # the bots' state file, or their PostgreSQL URL (`start_bot`)
    _ids: MessageIds | None = None

    @property
    def control(self) -> SandboxControl:
        return self.server.control

    def answer_ids(self, command_id: str) -> tuple[str, ...]:
        """The ids of the bot's answer to `command_id`, from the key in the bots' state file (one
        file for every process, so the key is read once)."""
        with self.lock:
            if self._ids is None:
                assert self.state_db is not None, "start_bot first"
                self._ids = read_message_ids(self.state_db)
            return self._ids.answer(command_id)

    def answered(self) -> int:
        with self.lock:
            return sum(1 for s in self.sent if s.answer is not None)


def own_integrations(
    control: SandboxControl, label: str, index: int, room: str, owner: str, *, token: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A person's two integrations in `room`: an incoming webhook and an outgoing one, each with
    every optional field set (script, trigger words, retry settings, alias, emoji, avatar, token),
    so a lossy write would show."""
    incoming = control.create_incoming_integration(
        f"{label} hook {index:02d}",
        channel=f"#{room}",
        created_by=owner,
        alias=f"hook-{index}",
        emoji=":bell:",
        avatar=f"https://example.org/{index}.png",
        script=SCRIPT,
        script_enabled=True,
    )
    outgoing = control.create_outgoing_integration(
        f"{label} relay {index:02d}",
        channel=f"#{room}",
        urls=[f"https://relay.example.org/{index}"],
        created_by=owner,
        trigger_words=[f"!relay{index}", "!all"],
        token=token,
        alias=f"relay-{index}",
        emoji=":satellite:",
        retry_failed_calls=True,
        retry_count=3,
        retry_delay="exponential",
        run_on_edits=True,
        target_room=f"#{room}",
    )
    return incoming, outgoing


def build_crowd(users: int, *, rooms: int = 4, seed: int = 6) -> Crowd:
    """A started sandbox with the demo workspace and `users` people (see the module docstring)."""
    server = SandboxServer()
    seeded = seed_demo(server.store)
    server.start()
    control = server.control
    rng = random.Random(seed)
    secrets: set[str] = set()
    for user in seeded["users"].values():
        secrets.update(v for v in (user["authToken"], user["password"]) if v)
    channels = [f"crowd-{n}" for n in range(1, rooms + 1)]
    credentials = [
        control.create_user(
            f"person{i:02d}", password=f"pw-person{i:02d}-{rng.randrange(10**9)}", roles=["user", OWNER_ROLE]
        )
        for i in range(users)
    ]
    for c in credentials:
        secrets.update((c.auth_token, c.password or ""))
    for n, channel in enumerate(channels):
        members = [BOT, *(c.username for i, c in enumerate(credentials) if i % rooms == n)]
        control.create_room(channel, members=members, owner="admin")
    people: list[Person] = []
    for i, c in enumerate(credentials):
        channel = channels[i % rooms]
        incoming, outgoing = own_integrations(
            control, "Crowd", i, channel, c.username, token=f"outgoing-token-{i:02d}-{rng.randrange(10**12)}"
        )
        secrets.update((incoming["token"], outgoing["token"]))
        dm = control.create_direct(c.username, BOT)["_id"]
        parent = control.post_message(c.username, channel, f"thread of {c.username}")["_id"]
        people.append(Person(i, c, channel, dm, parent, incoming, outgoing))
    for doc in control.integrations():
        if doc.get("token"):
            secrets.add(doc["token"])
    originals = {d["_id"]: d for d in control.integrations()}
    return Crowd(server, seeded, people, {s for s in secrets if s}, originals)


def start_bot(crowd: Crowd, workdir: Path, **settings: str) -> BotProcess:
    """A bot process in `workdir`: on its SQLite file there, or on `BOT_STATE_URL` if given (a
    replica: every one on the same database)."""
    creds = crowd.seed["users"][BOT]
    workdir.mkdir(parents=True, exist_ok=True)
    env = bot_environment(
        crowd.server.url,
        workdir,
        ROCKETCHAT_USER_ID=creds["userId"],
        ROCKETCHAT_AUTH_TOKEN=creds["authToken"],
        **settings,
    )
    crowd.state_db = env.get("BOT_STATE_URL") or Path(env["BOT_STATE_DB"])
    return BotProcess(env, workdir)


def command_text(person: Person, integration: dict[str, Any], action: str, *, in_dm: bool, variant: int) -> str:
    """`disable incoming "Crowd hook 03" because …` / `enable <id>`, with or without the prefix."""
    prefix = "" if in_dm else "!integration "
    if integration["type"] == "webhook-incoming":
        target = f'incoming "{integration["name"]}"' if variant % 2 == 0 else f'"{integration["name"]}"'
    else:
        target = integration["_id"]
    reason = f" because crowd test {person.index}" if action == "disable" and variant % 3 == 0 else ""
    return f"{prefix}{action} {target}{reason}"


def judge_answer(text: str, action: str) -> str:
    if ("Disabled" if action == "disable" else "Enabled") in text:
        return "done"
    if "nothing was changed" in text and any(w in text for w in ("not answering", "rate-limiting", "can't record")):
        return "not done"
    return f"unexpected: {text[:200]}"


def drive(crowd: Crowd, person: Person, commands: int, *, seed: int, answer_timeout: float) -> None:
    """One person: `commands` commands, alternating their two integrations, each answered before the next."""
    rng = random.Random(seed * 1000 + person.index)
    control = crowd.control
    enabled = {person.incoming["_id"]: True, person.outgoing["_id"]: True}
    for k in range(commands):
        integration = (person.incoming, person.outgoing)[k % 2]
        action = "disable" if enabled[integration["_id"]] else "enable"
        place = rng.choice(("room", "thread", "dm"))
        text = command_text(person, integration, action, in_dm=place == "dm", variant=rng.randrange(6))
        room = person.dm if place == "dm" else person.room
        thread = person.parent if place == "thread" else None
        message = control.post_message(person.name, room, text, tmid=thread)
        sent = Sent(person.name, message, integration["_id"], action, thread)
        with crowd.lock:
            crowd.sent.append(sent)
        wanted = crowd.answer_ids(message["_id"])
        answer = control.wait_for_message(
            room, lambda m, w=wanted: m["_id"] in w and m["u"]["username"] == BOT, timeout=answer_timeout
        )
        verdict = judge_answer(answer.get("msg", ""), action)
        with crowd.lock:
            sent.answer, sent.verdict = answer, verdict
        if verdict == "done":
            enabled[integration["_id"]] = not enabled[integration["_id"]]


def run_crowd(crowd: Crowd, commands: int, *, seed: int, answer_timeout: float) -> list[threading.Thread]:
    threads = [
        threading.Thread(
            target=drive,
            args=(crowd, person, commands),
            kwargs={"seed": seed, "answer_timeout": answer_timeout},
            name=f"person-{person.index}",
            daemon=True,
        )
        for person in crowd.people
    ]
    for thread in threads:
        thread.start()
    return threads


# --- disturbances ------------------------------------------------------------------------------------

SPACING = 3.5  # seconds of quiet on an endpoint after its burst was used up (longer than one call's retries)
TICK = 0.5
REFUSAL = 1.0

# The loop of disturbances: ("drop",), ("refuse",) or ("burst", endpoint, mode, count).
DISTURBANCES: tuple[tuple[str, ...], ...] = (
    ("drop",),
    ("burst", "integrations.update", "500", "2"),
    ("refuse",),
    ("burst", "chat.sendMessage", "500", "6"),
    ("burst", "integrations.get", "500", "2"),
    ("drop",),
    ("burst", "users.info", "500", "2"),
    ("burst", "integrations.list", "429", "1"),
    ("burst", "integrations.update", "429", "1"),
    ("drop",),
    ("burst", "chat.sendMessage", "429", "2"),
    ("burst", "integrations.list", "500", "2"),
)


class Disturber:
    """Works through DISTURBANCES, one per tick, holding one back until it is safe: a burst on an
    endpoint only once the previous one there was used up at least SPACING ago, a refusal only
    once every burst was used up SPACING ago, nothing on REST within SPACING of a refusal. So the
    failures one call meets never add up beyond one burst (see tests/e2e/test_chaos.py).

    The quiet is counted from when a burst was *used up*, not from when it was injected: a burst
    may wait for its endpoint's next call for many seconds, and that call retries (up to 4
    attempts within ~2 s) right as its failures run out. Counted from the injection, the next
    burst went in between those attempts: four 500s in a row on one integrations.get, and an
    answer "not done" that the test rightly refused."""

    def __init__(
        self, crowd: Crowd, bots: list[BotProcess], workdir: Path, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.crowd = crowd
        self.bots = bots
        self.workdir = workdir
        self.clock = clock
        self.targets: dict[str, int] = {}  # endpoint -> the call count that uses up its last burst
        self.used_up: dict[str, float] = {}  # endpoint -> when its last burst was first seen used up
        self.last_refusal = -SPACING
        self.step = 0
        self.kills = 0
        self.dropped = 0
        self.done: list[str] = []

    def quiet(self, now: float, endpoint: str | None = None) -> bool:
        """The endpoint's bursts (every endpoint's, for None) were all used up SPACING ago or more."""
        counts = self.crowd.control.counters().rest
        for name, target in self.targets.items():
            if name not in self.used_up and counts.get(name, 0) >= target:
                self.used_up[name] = now
        names = self.targets if endpoint is None else [n for n in (endpoint,) if n in self.targets]
        return all(name in self.used_up and now - self.used_up[name] >= SPACING for name in names)

    def tick(self, total: int) -> None:
        if self.kills < 2 and self.crowd.answered() >= total * (self.kills + 1) // 3:
            self.kill_and_restart()
            return
        action = DISTURBANCES[self.step % len(DISTURBANCES)]
        control = self.crowd.control
        now = self.clock()
        if action[0] in ("drop", "refuse") and self.step >= len(DISTURBANCES):
            # One round of socket trouble is enough: the reconnect backoff grows with every drop
            # (30 s ready resets it), and the test should not spend its time waiting it out.
            self.step += 1
            return
        if action[0] == "drop":
            self.dropped += control.drop_connections()
            label = "drop"
        elif action[0] == "refuse":
            if now - self.last_refusal < SPACING or not self.quiet(now):
                return  # not yet safe: try again on the next tick
            control.refuse_connections(REFUSAL)
            self.dropped += control.drop_connections()
            self.last_refusal = now
            label = "refuse"
        else:
            _, endpoint, mode, count = action
            if now - self.last_refusal < SPACING or not self.quiet(now, endpoint):
                return
            self.targets[endpoint] = control.counters().rest.get(endpoint, 0) + int(count)
            self.used_up.pop(endpoint, None)
            control.fail_next(endpoint, int(count), mode, retry_after=1.0)  # type: ignore[arg-type]
            label = f"{mode}x{count} {endpoint}"
        self.done.append(label)
        self.step += 1

    def kill_and_restart(self) -> None:
        old = self.bots[-1]
        old.process.kill()  # SIGKILL: no shutdown, no draining, whatever was in flight is cut
        old.wait_exit(20)
        self.kills += 1
        self.done.append("kill -9")
        bot = start_bot(self.crowd, self.workdir, BOT_LOG_LEVEL="DEBUG")
        self.bots.append(bot)
        bot.wait_ready()


# --- checks ------------------------------------------------------------------------------------------


def query(state: Path | str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a read-only statement on the bots' state: a SQLite file or a PostgreSQL URL."""
    if isinstance(state, str) and state.startswith("postgresql://"):
        with psycopg.connect(state, autocommit=True) as conn:
            return [tuple(row) for row in conn.execute(sql.encode()).fetchall()]
    with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as db:
        return [tuple(row) for row in db.execute(sql).fetchall()]


def audit_rows(state_db: Path | str) -> list[dict[str, Any]]:
    rows = query(state_db, "SELECT message_id, integration_id, action, before_json, after_json FROM audit ORDER BY id")
    return [
        {
            "message_id": r[0],
            "integration_id": r[1],
            "action": r[2],
            "before": json.loads(r[3]) if r[3] else None,
            "after": json.loads(r[4]) if r[4] else None,
        }
        for r in rows
    ]


def verify(crowd: Crowd, state_db: Path | str) -> dict[str, int]:
    """The checks of the module docstring; returns counts for the test's report."""
    control = crowd.control
    sent = list(crowd.sent)
    problems = [s for s in sent if s.verdict not in ("done", "not done")]
    assert not problems, [(s.message["msg"], s.verdict) for s in problems[:5]]

    # Exactly one answer per command, with an id of its chain, in its room and thread.
    rooms = {s.message["rid"] for s in sent}
    bot_messages = [m for room in rooms for m in control.messages(room) if m["u"]["username"] == BOT]
    expected = {answer: s for s in sent for answer in crowd.answer_ids(s.message["_id"])}
    assert {m["_id"] for m in bot_messages} <= set(expected), "the bot posted something that answers no command"
    answers = Counter(expected[m["_id"]].message["_id"] for m in bot_messages)
    assert set(answers) == {s.message["_id"] for s in sent}, "a command was not answered"
    twice = {command for command, count in answers.items() if count > 1}
    assert not twice, [
        (m["_id"], expected[m["_id"]].message["msg"], m.get("msg", "")[:120])
        for m in bot_messages
        if expected[m["_id"]].message["_id"] in twice
    ]
    for message in bot_messages:
        command = expected[message["_id"]]
        assert message["rid"] == command.message["rid"]
        assert message.get("tmid") == command.thread, "an answer left its thread"

    # Applied exactly once (done) or not at all (not done), by the audit log.
    rows = audit_rows(state_db)
    by_message = Counter(r["message_id"] for r in rows)
    for s in sent:
        count = by_message.get(s.message["_id"], 0)
        assert count == (1 if s.verdict == "done" else 0), (s.message["msg"], s.message["_id"], s.verdict, count)
    for row in rows:
        if row["message_id"] in {s.message["_id"] for s in sent}:
            command = next(s for s in sent if s.message["_id"] == row["message_id"])
            assert row["integration_id"] == command.integration_id and row["action"] == command.action
            flags = (row["before"]["enabled"], row["after"]["enabled"])
            assert flags == (command.action == "disable", command.action == "enable"), (command.message["msg"], flags)

    # Every integration: the state its answers imply, and not one other field lost or changed.
    for integration_id, original in crowd.originals.items():
        now = control.integration(integration_id)
        flips = sum(1 for s in sent if s.integration_id == integration_id and s.verdict == "done")
        assert now["enabled"] is (original["enabled"] if flips % 2 == 0 else not original["enabled"]), integration_id
        kept, after = comparable(original), comparable(now)
        assert after == kept, f"{original['name']} changed: {sorted(_hashable(kept) ^ _hashable(after))}"
    return {
        "commands": len(sent),
        "done": sum(1 for s in sent if s.verdict == "done"),
        "not done": sum(1 for s in sent if s.verdict == "not done"),
    }


def unanswered_story(crowd: Crowd, state_db: Path | str, outputs: Iterable[str]) -> list[str]:
    """For each command without an answer, what tells whether the stream or the catch-up missed it:
    its claim in the state file, its room's stored cursor against its time (a cursor at or past an
    unclaimed command means a pass can never find it), and which bots' logs name it."""
    with crowd.lock:
        missing = [s for s in crowd.sent if s.answer is None]
    if not missing:
        return []
    logs = list(outputs)
    claims = dict(query(state_db, "SELECT message_id, status FROM processed_messages"))
    cursors = dict(query(state_db, "SELECT room_id, last_seen FROM room_cursors"))
    story = []
    posted_at = [_epoch(s.message["ts"]) for s in missing]
    story.extend(timeline(logs, min(posted_at) - TIMELINE_MARGIN, max(posted_at) + TIMELINE_MARGIN))
    for sent in missing:
        message_id, room_id, ts = sent.message["_id"], sent.message["rid"], sent.message["ts"]
        cursor = cursors.get(room_id)
        posted = _epoch(ts)
        where = "none stored" if cursor is None else ("at or past it" if cursor >= posted else "before it")
        named = [n for n, text in enumerate(logs) if message_id in text]
        story.append(
            f"{sent.person}'s {message_id} in {room_id} at {ts}: claim {claims.get(message_id, 'none')}, "
            f"room cursor {where}, named in the logs of bots {named}"
        )
    return story


# What a bot did with its session and its cursors: enough to tell how a command escaped both the
# stream and the catch-up (`catchup.cursors_stored` names each room whose stored cursor moved).
TIMELINE_EVENTS = frozenset(
    {
        "bot.starting",
        "bot.ready",
        "realtime.ready",
        "realtime.disconnected",
        "realtime.connect_failed",
        "catchup.done",
        "catchup.failed",
        "catchup.room_skipped",
        "catchup.cursors",
        "catchup.cursors_stored",
    }
)
TIMELINE_MARGIN = 20.0  # seconds either side of the unanswered commands


def timeline(outputs: list[str], start: float, end: float) -> list[str]:
    """The bots' session and catch-up events (TIMELINE_EVENTS) between `start` and `end` (epoch
    seconds), in time order, one line each: `bot N at <time>: <event> <fields>`."""
    lines: list[tuple[float, str]] = []
    for number, output in enumerate(outputs):
        for raw in output.splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(entry, dict) or entry.get("event") not in TIMELINE_EVENTS:
                continue
            stamp = entry.get("timestamp")
            when = _epoch(stamp) if isinstance(stamp, str) else None
            if when is None or not start <= when <= end:
                continue
            fields = {k: v for k, v in entry.items() if k not in ("event", "timestamp", "level", "logger", "_name")}
            lines.append((when, f"bot {number} at {stamp}: {entry['event']} {fields}"))
    return [line for _, line in sorted(lines, key=lambda pair: pair[0])]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored integration without what every write of the same data changes on the server: the
    update timestamps, the compiled script (recompiled from `script`; only its presence must stay)
    and `skipTranspile` (8.x stores an absent one as false). A null is the same as an absent key
    (an update stores the optional fields it was not sent as null, contract §2.4.4)."""
    out = {k: v for k, v in doc.items() if k not in SERVER_MANAGED and v is not None}
    out["scriptCompiled"] = bool(out.get("scriptCompiled"))
    out["skipTranspile"] = out.get("skipTranspile") is True
    return out


def _hashable(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(k, json.dumps(v, sort_keys=True)) for k, v in doc.items()}


def leaked_secrets(outputs: Iterable[str], secrets: Iterable[str]) -> list[str]:
    """The secrets (shown by their length only) that appear in any of the outputs."""
    text = "\n".join(outputs)
    return [f"<secret of {len(s)} characters>" for s in secrets if len(s) >= 6 and s in text]


class ReplicaDisturber(Disturber):
    """The disturbances of `Disturber` against several replicas on one PostgreSQL: each kill hits a
    replica picked at random (a new one starts in a new working directory), and once half the
    commands are answered the database itself is killed and started again (`restart_database`)."""

    def __init__(
        self,
        crowd: Crowd,
        bots: list[BotProcess],
        workdir: Path,
        *,
        settings: dict[str, str],
        restart_database: Callable[[], None],
        seed: int,
    ) -> None:
        super().__init__(crowd, bots, workdir)
        self.settings = settings
        self.restart_database = restart_database
        self.rng = random.Random(seed)
        self.live = list(bots)
        self.database_restarts = 0

    def tick(self, total: int) -> None:
        answered = self.crowd.answered()
        # Early, while most commands are still to come: two kills, then the database restart
        # (commands are answered fast while it is down, so the rest go quickly after it).
        if self.kills < 2 and answered >= total * (self.kills + 1) * 15 // 100:
            self.kill_and_restart()
        elif self.kills == 2 and self.database_restarts == 0 and answered >= total * 45 // 100:
            self.restart_database()
            self.database_restarts += 1
            self.done.append("database restart")
        else:  # the drops, refusals and bursts (its own kills come later than these: 1/3, 2/3)
            super().tick(total)

    def kill_and_restart(self) -> None:
        """Kill a live replica; a new one starts without being waited for (the others serve)."""
        victim = self.rng.choice(self.live)
        victim.process.kill()
        victim.wait_exit(20)
        self.live.remove(victim)
        self.kills += 1
        self.done.append(f"kill -9 replica {self.bots.index(victim)}")
        bot = start_bot(self.crowd, self.workdir / f"replica-{len(self.bots)}", **self.settings)
        self.bots.append(bot)
        self.live.append(bot)
