"""A real, throwaway PostgreSQL server for the tests, and the fixtures that hand it out.

`PostgresServer` runs Debian's server binaries (the newest /usr/lib/postgresql/<version>/bin;
`make postgres` installs the `postgresql` package when there is none) on a cluster of its own:
`initdb` into a fresh temporary directory, then `postgres` itself as our child process, listening
on 127.0.0.1 on a free port with its unix socket in that directory. What makes data survive a crash of the
machine is switched off (fsync, full_page_writes): only the machine's crash would lose data, and
nobody cares then. What makes it survive a crash of the server is kept: synchronous_commit stays
on, so a commit has reached the operating system before it returns, and a test that `kill()`s the
server finds every committed row after the next start. Off, the last commits before a kill were
lost every time (10 out of 10), and on costs nothing here: with fsync off a commit is one write(),
2,000 commits take 0.11 s either way.
Connections need the password, checked with scram-sha-256 like a production server's, so the URLs
the tests hand to the bot look like real ones (and the password is a secret for the suite's secret
watch: a test that logs a URL with it fails the session, tests/secret_watch.py).

Why the postmaster is run directly and not through `pg_ctl`: it stays our child, so its process
handle says whether it is running, `stop()` and `kill()` are one signal each (SIGINT: fast
shutdown; SIGQUIT: immediate shutdown, crash recovery at the next start) and it gets a parent-death
signal: if the pytest process dies without cleaning up, the server shuts down with it. Ready means
the postmaster wrote "ready" into postmaster.pid, as `pg_ctl start --wait` checks.

`initdb` refuses to run as root, and CI runs as root: then everything runs as the `postgres`
system user (created by the Debian package) and the temporary directory belongs to it.

The fixtures (registered by the root conftest.py for every test folder):
- `postgres_server` (session): one server per pytest process, that is per xdist worker. Workers
  do not share one: a test may stop, restart or kill the server, and another worker's tests must
  not notice. Started at the first test that asks, stopped and removed at the end of the session.
- `postgres_url` (function): the URL of a new, empty database on that server, dropped after the
  test. After the test the server is running again, whatever the test did to it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import psycopg
import pytest
from psycopg import sql

from tests.secret_watch import WATCH

PG_ROOT: Final = Path("/usr/lib/postgresql")
SYSTEM_USER: Final = "postgres"  # the Debian package's user, for running as root
SUPERUSER: Final = "postgres"  # the cluster's superuser role
HOST: Final = "127.0.0.1"
DIR_PREFIX: Final = "pytest-postgres-"
START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 30.0
SETTINGS: Final = {
    "listen_addresses": HOST,
    "fsync": "off",
    "synchronous_commit": "on",  # the default, said out loud: see the module docstring
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "max_wal_size": "256MB",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


class PostgresError(RuntimeError):
    """The test server could not be set up or does not behave."""


def find_bindir(root: Path = PG_ROOT) -> Path:
    """The bin folder of the newest PostgreSQL version installed the Debian way; fails loudly."""
    found = sorted(
        (int(path.parent.parent.name), path.parent)
        for path in root.glob("*/bin/initdb")
        if path.parent.parent.name.isdigit()
    )
    if not found:
        raise PostgresError(
            f"no PostgreSQL server binaries under {root}/<version>/bin: the tests need a real server. "
            "Run `make postgres` (installs Debian's `postgresql` package) or "
            "`apt-get install --no-install-recommends postgresql`."
        )
    return found[-1][1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(parent: Path) -> None:
    """Remove the directories of servers whose pytest process is gone (killed before it could clean up)."""
    for path in parent.glob(f"{DIR_PREFIX}*"):
        owner = path.name.removeprefix(DIR_PREFIX).split("-", 1)[0]
        if owner.isdigit() and not _alive(int(owner)):
            shutil.rmtree(path, ignore_errors=True)


class PostgresServer:
    """One throwaway cluster; see the module docstring. Not thread-safe: one test at a time drives it."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.password = secrets.token_urlsafe(24)
        self.port = 0  # chosen at the first start, kept by every restart
        self.startup_seconds = 0.0  # initdb and the first start, for the record
        self._databases = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._as: list[str] = []  # the command prefix that runs a binary as the server's user
        self._uid_gid: tuple[int, int] | None = None
        parent = Path(tempfile.gettempdir())
        remove_leftovers(parent)
        self.directory = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-", dir=parent))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self._closed = False
        atexit.register(self.close)

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server: the first time on a new cluster and a free port, afterwards on the same ones."""
        if self._closed:
            raise PostgresError("the server was closed")
        if self.running:
            raise PostgresError(f"the server on port {self.port} is already running")
        if not self.data.exists():
            started = time.perf_counter()
            self._initdb()
            for _attempt in range(5):  # another process may take the free port before the server binds it
                self.port = _free_port()
                written = len(self.log_text())
                try:
                    self._start()
                    break
                except PostgresError:
                    if "already in use" not in self.log_text()[written:]:
                        raise
            else:
                raise PostgresError(f"no free port for the server:\n{self._log_tail()}")
            self.startup_seconds = time.perf_counter() - started
        else:
            self._start()

    def stop(self) -> None:
        """Fast shutdown: open sessions are ended, the data is kept (SIGINT, as `pg_ctl stop -m fast`)."""
        self._signal(signal.SIGINT)

    def kill(self) -> None:
        """Immediate shutdown, like a crash: no checkpoint, the next start recovers from the WAL (SIGQUIT)."""
        self._signal(signal.SIGQUIT)

    def restart(self) -> None:
        """Fast shutdown and start again: same port, same data, so every URL handed out still works."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server (immediately: nothing is kept) and remove its directory. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(PostgresError):
            self._signal(signal.SIGQUIT)
        shutil.rmtree(self.directory, ignore_errors=True)
        atexit.unregister(self.close)

    # --- databases -----------------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@{HOST}:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Create a new, empty database (a copy of template0) and return its URL."""
        if name is None:
            self._databases += 1
            name = f"test_{self._databases}_{secrets.token_hex(3)}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, ending the sessions still connected to it."""
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # --- the work ------------------------------------------------------------------------------

    def _run_as(self) -> list[str]:
        """`setpriv`, to the postgres user when root (initdb refuses root)."""
        if os.geteuid() != 0:
            return ["setpriv"]
        if not self._as:
            try:
                user = pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                raise PostgresError(
                    f"running as root, and initdb refuses root, but there is no {SYSTEM_USER!r} user to run it as: "
                    "it comes with Debian's `postgresql` package (`make postgres`)"
                ) from None
            self._uid_gid = (user.pw_uid, user.pw_gid)
            self._as = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"]
        return self._as

    def _initdb(self) -> None:
        prefix = self._run_as()
        if self._uid_gid is not None:
            os.chown(self.directory, *self._uid_gid)
        password_file = self.directory / "password"
        password_file.write_text(self.password + "\n")
        if self._uid_gid is not None:
            os.chown(password_file, *self._uid_gid)
        command = [
            *prefix,
            str(self.bindir / "initdb"),
            f"--pgdata={self.data}",
            f"--username={SUPERUSER}",
            f"--pwfile={password_file}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        finally:
            password_file.unlink()
        if done.returncode != 0:
            raise PostgresError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def _start(self) -> None:
        settings = {**SETTINGS, "port": str(self.port), "unix_socket_directories": str(self.directory)}
        command = [
            *self._run_as(),
            "--pdeathsig=INT",  # shut down (fast) with the pytest process if it dies without closing us
            str(self.bindir / "postgres"),
            "-D",
            str(self.data),
            *(arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")),
        ]
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ready():
            if self._process.poll() is not None:
                raise PostgresError(f"postgres exited ({self._process.returncode}) while starting:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                self._signal(signal.SIGQUIT)
                raise PostgresError(f"postgres was not ready within {START_TIMEOUT:.0f} s:\n{self._log_tail()}")
            time.sleep(0.01)

    def _ready(self) -> bool:
        """Whether our postmaster wrote "ready" into postmaster.pid (line 1: its pid, line 8: its status)."""
        assert self._process is not None
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return False
        return len(lines) >= 8 and lines[0] == str(self._process.pid) and lines[7].strip() == "ready"

    def _signal(self, signum: signal.Signals) -> None:
        if not self.running:
            return
        assert self._process is not None
        self._process.send_signal(signum)
        try:
            self._process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            raise PostgresError(f"postgres did not stop on {signum.name}:\n{self._log_tail()}") from None

    def _log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


# --- the fixtures (a plugin: the root conftest.py registers this module) --------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One running server for this pytest process (xdist worker); see the module docstring."""
    server = PostgresServer()
    WATCH.add_secret(server.password, "database password")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        # Its log is checked for secrets like the tests' output.
        WATCH.add_log(f"the log of the PostgreSQL server on port {server.port}", server.log_text())
        server.close()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test; the server runs again afterwards."""
    url = postgres_server.create_database()
    yield url
    if not postgres_server.running:  # the test stopped or killed it: the next test needs it
        postgres_server.start()
    postgres_server.drop_database(url.rsplit("/", 1)[1])
