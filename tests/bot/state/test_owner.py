"""One running bot per SQLite state file (bot/state/owner.py).

Was: two `integrations-bot run` on one file both ran, each with its own realtime session, timers
and confirmations (a timed re-enable fired twice). Now the second stops at once, naming the first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.state.owner import StateFileOwner, lock_path

HOLD = """
import sys, time
from pathlib import Path
from bot.state.owner import StateFileOwner
owner = StateFileOwner.acquire(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(60)
"""


def hold_in_another_process(state_file: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(state_file)], stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_process_on_the_same_file_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    state_file = tmp_path / "state.sqlite3"
    holder = hold_in_another_process(state_file)
    try:
        with pytest.raises(ConfigError) as refused:
            StateFileOwner.acquire(state_file)
        assert str(refused.value) == (
            f"BOT_STATE_DB: {state_file} is in use by another integrations-bot (pid {holder.pid}); "
            "run one bot per state file (several replicas need a shared database)"
        )
    finally:
        holder.kill()
        holder.wait()


def test_kill_9_leaves_no_stale_lock(tmp_path: Path) -> None:
    state_file = tmp_path / "state.sqlite3"
    holder = hold_in_another_process(state_file)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    deadline = time.monotonic() + 5
    while True:  # the kernel drops the lock with the process; nothing to clean up by hand
        try:
            owner = StateFileOwner.acquire(state_file)
            break
        except ConfigError:
            assert time.monotonic() < deadline, "the lock of a killed process was never released"
            time.sleep(0.05)
    assert lock_path(state_file).read_text().strip() == str(os.getpid())
    owner.release()


def test_another_file_and_a_released_lock_are_free(tmp_path: Path) -> None:
    first = StateFileOwner.acquire(tmp_path / "a.sqlite3")
    holder = hold_in_another_process(tmp_path / "b.sqlite3")  # another file: no conflict
    try:
        first.release()
        second = hold_in_another_process(tmp_path / "a.sqlite3")  # released: another process takes it
        second.kill()
        second.wait()
    finally:
        holder.kill()
        holder.wait()


def test_an_in_memory_database_needs_no_lock() -> None:
    StateFileOwner.acquire(Path(":memory:")).release()
