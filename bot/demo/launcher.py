"""`integrations-bot demo` (`make demo`): the seeded sandbox, the real bot, and a terminal chat.

Theory of operation
-------------------
The demo builds a throwaway environment in a temporary directory and tears it down on the way
out, whatever the way out is (`:quit`, Ctrl-D, Ctrl-C, SIGTERM, an error):

    start the sandbox (`python -m sandbox --port N --credentials-file DIR/credentials.json`)
      → wait for the credentials file (written only once the server accepts connections)
      → start the bot (`python -m bot.ops.cli run`) as the seeded `integrations-bot` user, logging
        JSON to DIR/bot.log, in DIR so no stray .env is read
      → wait for its `bot.ready` log event
      → chat (bot.demo.chat): interactive on a terminal, or a script from --script / a pipe
      → SIGTERM the bot and wait for it, then the sandbox; remove DIR unless --keep-state

Both children run in their own session, so a Ctrl-C at the terminal reaches only the demo, which
then stops them in order (the bot first, so it never sees its server vanish mid-command).
Progress goes to stderr; stdout carries only the chat, so a script's transcript can be captured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Final, TextIO

from bot.demo.chat import (
    BOT_USERNAME,
    DEFAULT_ROOM,
    HISTORY_ON_ENTER,
    ChatApi,
    ChatSession,
    DemoError,
    RoomFeed,
    Terminal,
    Workspace,
    run_interactive,
    run_script,
)
from bot.demo.render import banner
from bot.demo.script_lines import help_lines
from bot.demo.traffic import DemoTrafficError, startup_calls, startup_traffic
from sandbox.control import SandboxClient

STARTUP_TIMEOUT: Final = 30.0  # seconds for the sandbox's credentials and for the bot's ready event
BOT_STOP_GRACE: Final = 15.0  # the bot's own shutdown grace is 10 s by default
SANDBOX_STOP_GRACE: Final = 10.0
READY_EVENT: Final = "bot.ready"
_POLL: Final = 0.05
# Settings the demo decides itself; the operator's own values must not leak into the demo's bot.
_PASS_THROUGH: Final = frozenset({"BOT_LOG_LEVEL"})


@dataclass(frozen=True)
class DemoOptions:
    legacy_update: bool = False
    script: str | None = None
    port: int = 0
    keep_state: bool = False
    timeout: float = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="integrations-bot demo",
        description=(
            "Start the seeded sandbox Rocket.Chat and the bot, then chat with the bot from the terminal "
            "as one of the seeded users. Everything is stopped and removed on exit."
        ),
    )
    parser.add_argument(
        "--legacy-update",
        action="store_true",
        help="make the sandbox imitate the 7.x integrations.update that wipes omitted fields",
    )
    parser.add_argument(
        "--script",
        metavar="FILE",
        help="read the lines to type from FILE ('-' for stdin), wait for the bot's answer to each, print the "
        "transcript and exit non-zero if a line got no answer (the default when stdin is not a terminal)",
    )
    parser.add_argument("--port", type=int, default=0, metavar="N", help="sandbox port (default: any free port)")
    parser.add_argument("--keep-state", action="store_true", help="keep the temporary directory (logs, state file)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long a script waits for the bot's answer to a line (default: %(default)g)",
    )
    return parser


def parse_options(argv: Sequence[str]) -> DemoOptions:
    parser = build_parser()
    args = parser.parse_args(list(argv))
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    return DemoOptions(args.legacy_update, args.script, args.port, args.keep_state, args.timeout)


# --- the two processes ------------------------------------------------------------------------------


def bot_environment(workspace: Workspace, state_dir: Path, base: dict[str, str]) -> dict[str, str]:
    """The bot's environment: the caller's, minus its Rocket.Chat and bot settings, plus the demo's."""
    bot = workspace.user(BOT_USERNAME)
    env = {
        key: value for key, value in base.items() if not key.startswith(("ROCKETCHAT_", "BOT_")) or key in _PASS_THROUGH
    }
    env.update(
        ROCKETCHAT_URL=workspace.url,
        ROCKETCHAT_USER_ID=bot.user_id,
        ROCKETCHAT_AUTH_TOKEN=bot.auth_token,
        BOT_STATE_DB=str(state_dir / "bot-state.sqlite3"),
        BOT_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    return env


def ready_in(log_lines: Iterable[str]) -> bool:
    """Whether the bot's JSON log announces it is ready."""
    for line in log_lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == READY_EVENT:
            return True
    return False


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


class DemoProcesses:
    """Starts and stops the sandbox and the bot; owns their log files."""

    def __init__(self, state_dir: Path, options: DemoOptions, bot_command: Sequence[str] | None = None) -> None:
        self.state_dir = state_dir
        self.options = options
        self.bot_command = list(bot_command or [sys.executable, "-m", "bot.ops.cli", "run"])
        self.credentials_path = state_dir / "credentials.json"
        self.sandbox_log = state_dir / "sandbox.log"
        self.bot_log = state_dir / "bot.log"
        self.sandbox: subprocess.Popen[bytes] | None = None
        self.bot: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []

    def _spawn(self, command: Sequence[str], log: Path, env: dict[str, str] | None) -> subprocess.Popen[bytes]:
        handle = log.open("ab")
        self._logs.append(handle)
        try:
            # Our own interpreter with fixed arguments (or a test's stand-in bot): no untrusted input.
            return subprocess.Popen(  # noqa: S603
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                env=env,
                start_new_session=True,  # Ctrl-C reaches the demo only; it stops the children in order
            )
        except OSError as exc:
            raise DemoError(f"cannot start {command[0]}: {exc.strerror or exc}") from None

    def start_sandbox(self) -> Workspace:
        command = [sys.executable, "-m", "sandbox", "--port", str(self.options.port)]
        command += ["--credentials-file", str(self.credentials_path)]
        if self.options.legacy_update:
            command.append("--legacy-update")
        self.sandbox = self._spawn(command, self.sandbox_log, None)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.credentials_path.exists():
            if self.sandbox.poll() is not None:
                raise DemoError(f"the sandbox did not start: {_tail(self.sandbox_log, 1) or 'no output'}")
            if time.monotonic() > deadline:
                raise DemoError(f"the sandbox did not start within {STARTUP_TIMEOUT:g} s; see {self.sandbox_log}")
            time.sleep(_POLL)
        return Workspace.load(self.credentials_path)

    def start_bot(self, workspace: Workspace) -> None:
        env = bot_environment(workspace, self.state_dir, dict(os.environ))
        self.bot = self._spawn(self.bot_command, self.bot_log, env)

    def wait_bot_ready(self) -> None:
        assert self.bot is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        offset, pending = 0, b""
        while True:
            with contextlib.suppress(OSError), self.bot_log.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
                offset += len(chunk)
                pending += chunk
            *complete, pending = pending.split(b"\n")
            if ready_in(line.decode("utf-8", "replace") for line in complete):
                return
            status = self.bot.poll()
            if status is not None:
                last = _tail(self.bot_log, 3)
                raise DemoError(f"the bot stopped while starting (exit status {status}); {self.bot_log}:\n{last}")
            if time.monotonic() > deadline:
                raise DemoError(f"the bot did not report ready within {STARTUP_TIMEOUT:g} s; see {self.bot_log}")
            time.sleep(_POLL)

    def problem(self) -> str | None:
        """Why the chat cannot go on (a child died), or None."""
        if self.bot is not None and (status := self.bot.poll()) is not None:
            return f"the bot stopped (exit status {status}); see {self.bot_log}"
        if self.sandbox is not None and (status := self.sandbox.poll()) is not None:
            return f"the sandbox stopped (exit status {status}); see {self.sandbox_log}"
        return None

    def stop(self) -> None:
        """The bot first (it finishes what it is doing against a live server), then the sandbox."""
        for process, grace in ((self.bot, BOT_STOP_GRACE), (self.sandbox, SANDBOX_STOP_GRACE)):
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for handle in self._logs:
            handle.close()
        self._logs.clear()


# --- the whole run ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Let `kill <demo>` run the same clean-up as Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _script_lines(source: str, stdin: TextIO) -> Iterable[str]:
    if source == "-":
        return stdin
    try:
        return Path(source).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DemoError(f"cannot read the script {source}: {exc.strerror or exc}") from None


def run(
    options: DemoOptions,
    *,
    bot_command: Sequence[str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Build the environment, chat, tear down. 0: fine; 1: a script line went unanswered or a failure."""
    stdin = stdin if stdin is not None else sys.stdin
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    scripted = options.script is not None or not stdin.isatty()

    def progress(text: str) -> None:
        stderr.write(f"demo: {text}\n")
        stderr.flush()

    try:
        lines = _script_lines(options.script or "-", stdin) if scripted else None
    except DemoError as exc:
        progress(str(exc))
        return 1
    state_dir = Path(tempfile.mkdtemp(prefix="integrations-bot-demo-"))
    processes = DemoProcesses(state_dir, options, bot_command)
    try:
        with _sigterm_as_interrupt():
            progress("starting the sandbox Rocket.Chat ...")
            workspace = processes.start_sandbox()
            _start_traffic(workspace, progress)
            progress(f"sandbox at {workspace.url}; starting the bot (log: {processes.bot_log}) ...")
            processes.start_bot(workspace)
            processes.wait_bot_ready()
            progress("the bot is ready")
            return _chat(workspace, processes, options, lines, stdout)
    except DemoError as exc:
        progress(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        progress("stopping the bot and the sandbox ...")
        processes.stop()
        if options.keep_state:
            progress(f"kept {state_dir} (credentials, logs, the bot's state file)")
        else:
            shutil.rmtree(state_dir, ignore_errors=True)


def _start_traffic(workspace: Workspace, progress: Callable[[str], None]) -> None:
    """The webhook burst the demo starts with, so `noisy` has something to find (bot.demo.traffic)."""
    with SandboxClient(workspace.control_url, workspace.control_secret) as control:
        try:
            done = startup_traffic(control)
            failed = startup_calls(control)
        except DemoTrafficError as exc:
            raise DemoError(f"cannot post the demo's webhook traffic: {exc}") from None
    progress("webhook traffic: " + "; ".join(item.describe().replace("`", "") for item in done))
    progress(f"outgoing webhook calls: {failed} failed in the last hour (`failing` lists them)")


def _chat(
    workspace: Workspace,
    processes: DemoProcesses,
    options: DemoOptions,
    lines: Iterable[str] | None,
    stdout: TextIO,
) -> int:
    api = ChatApi(workspace.url)
    control = SandboxClient(workspace.control_url, workspace.control_secret)
    # The watcher long-polls on its own connection while the chat uses `control` for lookups.
    feed = RoomFeed(SandboxClient(workspace.control_url, workspace.control_secret))
    try:
        if lines is not None:
            session = ChatSession(
                workspace, api=api, control=control, feed=feed, out=Terminal(stdout).write, health=processes.problem
            )
            room = session.resolve_room(DEFAULT_ROOM)
            session.enter(room)
            session.out(f"== you are {session.user.username} in {room.label}")
            return run_script(session, lines, timeout=options.timeout)
        terminal = Terminal(stdout, _readline())
        session = ChatSession(
            workspace,
            api=api,
            control=control,
            feed=feed,
            out=terminal.write,
            health=processes.problem,
            history_on_enter=HISTORY_ON_ENTER,
        )
        room = session.resolve_room(DEFAULT_ROOM)
        for line in banner(
            server_url=workspace.url,
            state_dir=str(processes.state_dir),
            bot_log=str(processes.bot_log),
            username=session.user.username,
            room=room,
            bot_username=BOT_USERNAME,
            help_lines=help_lines(),
        ):
            terminal.write(line)
        session.enter(room, history=HISTORY_ON_ENTER)
        return run_interactive(session, terminal)
    finally:
        api.close()
        control.close()
        feed.close()


def _readline() -> object | None:
    try:
        import readline  # line editing and history where the platform has it
    except ImportError:
        return None
    return readline


def main(argv: list[str]) -> int:
    return run(parse_options(argv))
