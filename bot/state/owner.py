"""One running bot per SQLite state file: the second one refuses to start, with one clear line.

Two `integrations-bot run` on one file (a second copy started by mistake, a rolling update that
starts the new pod before the old one is gone) would each keep their own realtime session, their
own timers and their own confirmations: both fire the same timed re-enable, and a `set` preview
shown by one cannot be confirmed through the other. Several replicas need a shared database; a
file is for one process. So `run` holds an exclusive lock on `<state file>.lock` for as long as it
runs, and a second `run` on the same file exits at once (status 2, `ConfigError`) naming the pid
that holds it.

A POSIX record lock (`fcntl.lockf`): the kernel drops it when the process ends however it ends
(`kill -9`, OOM), so a restart never finds a stale lock to clean up; it is held per process, so
tests that run several bots one after another inside one process are not refused. `check` and
read-only tools do not take it: they may look at the file of a running bot.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO

from bot.errors import ConfigError

SUFFIX = ".lock"


def lock_path(state_file: Path) -> Path:
    return state_file.with_name(state_file.name + SUFFIX)


class StateFileOwner:
    """The lock of one state file, held from `acquire` to `release`."""

    def __init__(self, path: Path, handle: IO[str] | None) -> None:
        self.path = path
        self._handle = handle

    @classmethod
    def acquire(cls, state_file: Path) -> StateFileOwner:
        """Take the lock of `state_file`, or raise ConfigError naming the process that has it.
        An in-memory database (`:memory:`) has no file to share: nothing to lock."""
        if str(state_file) == ":memory:":
            return cls(state_file, None)
        path = lock_path(state_file)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = path.open("a+", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"BOT_STATE_DB: cannot create {path}: {exc.strerror or exc}") from None
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ConfigError(
                f"BOT_STATE_DB: {state_file} is in use by another integrations-bot (pid {holder}); "
                "run one bot per state file (several replicas need a shared database)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return cls(path, handle)

    def release(self) -> None:
        if self._handle is None:
            return
        with contextlib.suppress(OSError):
            self._handle.seek(0)
            self._handle.truncate()
            fcntl.lockf(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None
