"""The demo chat against the seeded in-process sandbox, with a stand-in bot process that echoes.

The chat posts through REST as the current user and reads the room through the control API; the
assertions look both at the transcript a person reads and at what the server stored.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.demo.chat import ChatApi, ChatSession, RoomFeed, Terminal, Workspace, run_interactive, run_script
from sandbox.control import SandboxClient
from sandbox.seed import seed_demo
from sandbox.server import SandboxServer
from sandbox.store import Store

FAKE_BOT = Path(__file__).parent.parent / "fake_demo_bot.py"
SHORT = 5.0  # seconds a script waits for an answer the stand-in gives within milliseconds
QUIET = 0.1  # the stand-in answers with one message at once: no need to watch for more for long


@pytest.fixture(scope="module")
def workspace() -> Iterator[tuple[SandboxServer, Workspace]]:
    store = Store()
    seeded = seed_demo(store)
    with SandboxServer(store) as server:
        space = Workspace.from_json(
            {"url": server.url, **seeded, "control": {"url": server.url, "secret": server.control_secret}}
        )
        bot = space.user("integrations-bot")
        env = {
            **os.environ,
            "ROCKETCHAT_URL": server.url,
            "ROCKETCHAT_USER_ID": bot.user_id,
            "ROCKETCHAT_AUTH_TOKEN": bot.auth_token,
        }
        process = subprocess.Popen([sys.executable, str(FAKE_BOT)], env=env, stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            assert "bot.ready" in process.stdout.readline()
            yield server, space
        finally:
            process.terminate()
            process.wait(10)
            if process.stdout:
                process.stdout.close()


class Transcript:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def chat(workspace: tuple[SandboxServer, Workspace]) -> Iterator[tuple[ChatSession, Transcript, SandboxServer]]:
    server, space = workspace
    out = Transcript()
    api = ChatApi(space.url)
    control = SandboxClient(space.control_url, space.control_secret)
    feed = RoomFeed(SandboxClient(space.control_url, space.control_secret))
    session = ChatSession(space, api=api, control=control, feed=feed, out=out)
    session.enter(session.resolve_room("general"))
    try:
        yield session, out, server
    finally:
        api.close()
        control.close()
        feed.close()


def last_message(server: SandboxServer, room: str, text: str) -> dict[str, Any]:
    found = [m for m in server.control.messages(room) if m.get("msg") == text]
    assert found, f"{text!r} not stored in {room}"
    return found[-1]


def test_each_line_is_posted_as_the_user_and_the_answer_is_shown(
    chat: tuple[ChatSession, Transcript, SandboxServer],
) -> None:
    session, out, server = chat
    status = run_script(session, ["# greet", "", "!integration help"], timeout=SHORT, quiet=QUIET)

    assert status == 0
    assert out.lines[:2] == [
        "[#general] admin: !integration help",
        "[#general] integrations-bot: echo: !integration help",
    ]
    stored = last_message(server, "general", "!integration help")
    assert stored["u"]["username"] == "admin"


def test_user_room_dm_and_thread_switches_change_where_lines_go(
    chat: tuple[ChatSession, Transcript, SandboxServer],
) -> None:
    session, out, server = chat
    script = [
        ":user admin",
        "!integration list",
        ":thread",
        "confirm",
        ":thread off",
        "after the thread",
        ":room ops",
        "in ops",
        ":dm",
        "show Guggy",
    ]
    assert run_script(session, script, timeout=SHORT, quiet=QUIET) == 0

    command = last_message(server, "general", "!integration list")
    assert command["u"]["username"] == "admin"
    assert last_message(server, "general", "confirm")["tmid"] == command["_id"]
    assert "tmid" not in last_message(server, "general", "after the thread")
    assert last_message(server, "ops", "in ops")["u"]["username"] == "admin"
    dm = server.control.create_direct("admin", "integrations-bot")  # the existing one
    assert last_message(server, dm["_id"], "show Guggy")["u"]["username"] == "admin"
    assert "[#general] ↳ admin: confirm" in out.lines
    assert "[#general] ↳ integrations-bot: echo: confirm" in out.lines
    assert "[#ops] integrations-bot: echo: in ops" in out.lines
    assert "[@integrations-bot] integrations-bot: echo: show Guggy" in out.lines
    assert "== you are admin in @integrations-bot" in out.lines


def test_a_line_without_an_answer_fails_the_script_but_said_lines_do_not(
    chat: tuple[ChatSession, Transcript, SandboxServer],
) -> None:
    session, out, _server = chat
    assert run_script(session, [":say no answer expected here"], timeout=1.0, quiet=QUIET) == 0
    assert run_script(session, ["no answer, please", "!integration help"], timeout=1.0, quiet=QUIET) == 1
    assert "!! no answer from integrations-bot within 1 s" in out.lines
    assert "[#general] integrations-bot: echo: !integration help" in out.lines  # the script went on


def test_problems_are_one_line_each_and_fail_the_script(chat: tuple[ChatSession, Transcript, SandboxServer]) -> None:
    session, out, server = chat
    server.control.create_room("board", room_type="p", members=["alice", "integrations-bot"])
    script = [":thread", ":user nobody", ":user integrations-bot", ":room nowhere", ":room board", "hello?", ":nope"]
    assert run_script(session, script, timeout=SHORT, quiet=QUIET) == 1

    problems = [line for line in out.lines if line.startswith("!! ")]
    assert len(problems) == 6
    assert "send a command in this room first" in problems[0]
    assert "no user 'nobody'" in problems[1]
    assert "the bot itself" in problems[2]
    assert "no room 'nowhere'" in problems[3]
    assert "Rocket.Chat refused it" in problems[4]  # admin is not in the private room: the server says no
    assert ":help" in problems[5]
    assert not [m for m in server.control.messages("board") if m.get("msg") == "hello?"]


def test_listings_come_from_the_workspace(chat: tuple[ChatSession, Transcript, SandboxServer]) -> None:
    session, out, server = chat
    script = [":integrations", ":users", ":rooms", ":help", ":quit", "never sent"]
    assert run_script(session, script, timeout=SHORT, quiet=QUIET) == 0
    guggy = next(d for d in server.control.integrations() if d["name"] == "Guggy" and d["type"] == "webhook-incoming")
    assert f"Guggy              incoming  yes      {guggy['_id']}" in out.text
    assert "* admin" in out.text and "own-integrations" in out.text
    assert "#platform-team" in out.text
    assert ":thread [off]" in out.text
    assert "never sent" not in out.text


def test_a_dead_bot_stops_the_wait_at_once(chat: tuple[ChatSession, Transcript, SandboxServer]) -> None:
    session, out, _server = chat
    session.health = lambda: "the bot stopped (exit status 1)"
    assert run_script(session, ["!integration help"], timeout=SHORT, quiet=QUIET) == 1
    assert out.lines == ["!! the bot stopped (exit status 1)"]


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeReadline:
    @staticmethod
    def get_line_buffer() -> str:
        return "!integ"


def test_the_terminal_redraws_the_prompt_and_typed_text_under_a_new_message() -> None:
    stream = FakeTty()
    terminal = Terminal(stream, FakeReadline())
    terminal._prompt = "alice [#general]> "  # as while input() waits
    terminal.write("[#general] integrations-bot: hi")
    assert stream.getvalue() == "\r\x1b[K[#general] integrations-bot: hi\nalice [#general]> !integ"


def test_interactive_mode_shows_answers_as_they_arrive(
    workspace: tuple[SandboxServer, Workspace], monkeypatch: pytest.MonkeyPatch
) -> None:
    _server, space = workspace
    stream = io.StringIO()
    terminal = Terminal(stream)
    api = ChatApi(space.url)
    control = SandboxClient(space.control_url, space.control_secret)
    feed = RoomFeed(SandboxClient(space.control_url, space.control_secret))
    session = ChatSession(space, api=api, control=control, feed=feed, out=terminal.write, history_on_enter=3)
    typed = iter([":room ops", "!integration list"])
    answered = threading.Event()

    def fake_input(_prompt: str) -> str:
        try:
            return next(typed)
        except StopIteration:
            deadline = time.monotonic() + SHORT  # leave (Ctrl-D) once the answer is on screen
            while "echo: !integration list" not in stream.getvalue() and time.monotonic() < deadline:
                time.sleep(0.01)
            answered.set()
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    try:
        session.enter(session.resolve_room("general"))
        assert run_interactive(session, terminal) == 0
    finally:
        api.close()
        control.close()
        feed.close()
    assert answered.is_set()
    lines = stream.getvalue().splitlines()
    assert "== you are admin in #ops" in lines
    assert "[#ops] integrations-bot: echo: !integration list" in lines
    assert "[#ops] admin: !integration list" not in lines  # what you typed is not echoed back


def test_flood_makes_an_incoming_webhook_post_into_its_channel_until_it_is_disabled(
    chat: tuple[ChatSession, Transcript, SandboxServer],
) -> None:
    session, out, server = chat
    grafana = next(d for d in server.control.integrations() if d["name"] == "Grafana")
    before = len(server.control.messages("alerts"))
    before_hooks = len([m for m in server.control.messages("alerts") if m.get("bot")])
    assert run_script(session, [":room alerts", ":flood grafana 3"], timeout=SHORT, quiet=QUIET) == 0
    posted = [m for m in server.control.messages("alerts")[before:] if m["u"]["username"] != "integrations-bot"]
    assert [m.get("bot") for m in posted] == [{"i": grafana["_id"]}] * 3  # as the webhook posts: `noisy` counts them
    assert "== `Grafana` posted 3 messages into #alerts" in out.lines

    server.control.update_integration(grafana["_id"], {"enabled": False})
    try:
        assert run_script(session, [":flood Grafana 5"], timeout=SHORT, quiet=QUIET) == 0
        hooks = [m for m in server.control.messages("alerts") if m.get("bot")]
        assert len(hooks) == len([m for m in posted if m.get("bot")]) + before_hooks  # switched off: nothing more
        # (the stand-in bot echoes every message, the webhook's too, so its echoes may come later)
        assert any("is disabled: Rocket.Chat refuses its posts" in line for line in out.lines)
    finally:
        server.control.update_integration(grafana["_id"], {"enabled": True})

    assert run_script(session, [":flood Deploy announcer 2", ":flood nothing-like-it"], timeout=SHORT, quiet=QUIET) == 1
    problems = [line for line in out.lines if line.startswith("!! ")]
    assert "is an outgoing webhook" in problems[-2] and "no incoming integration named" in problems[-1]
