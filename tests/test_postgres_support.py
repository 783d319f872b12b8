"""The real PostgreSQL server of the tests (tests/postgres_support.py): it starts, checks passwords,
hands each test its own database, survives restarts and kills, cleans up after itself, and its
password is a secret the suite's secret watch looks for.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests import postgres_support
from tests.postgres_support import SETTINGS, PostgresError, PostgresServer, find_bindir
from tests.session_support import REPO, run_session


def database_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def test_the_server_takes_a_password_connection_on_the_url_it_hands_out(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    assert postgres_url == (
        f"postgresql://postgres:{postgres_server.password}@127.0.0.1:{postgres_server.port}/{database_of(postgres_url)}"
    )
    async with await psycopg.AsyncConnection.connect(postgres_url) as connection:
        cursor = await connection.execute("SELECT current_database(), current_setting('max_connections')")
        assert await cursor.fetchone() == (database_of(postgres_url), SETTINGS["max_connections"])
        cursor = await connection.execute("SELECT current_setting('fsync'), current_setting('password_encryption')")
        assert await cursor.fetchone() == ("off", "scram-sha-256")


def test_a_wrong_password_is_refused(postgres_server: PostgresServer, postgres_url: str) -> None:
    wrong = postgres_url.replace(postgres_server.password, "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong).close()


def test_each_database_is_new_empty_and_separate(postgres_server: PostgresServer, postgres_url: str) -> None:
    other = postgres_server.create_database()
    assert database_of(other) != database_of(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("CREATE TABLE mine (value text)")
        connection.execute("INSERT INTO mine VALUES ('here')")
    with psycopg.connect(other) as connection:
        tables = connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    assert tables == []
    postgres_server.drop_database(database_of(other))


def test_a_restart_keeps_the_data_and_the_url(postgres_server: PostgresServer, postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("CREATE TABLE kept AS SELECT 42 AS value")
    port = postgres_server.port
    postgres_server.restart()
    assert postgres_server.port == port
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT value FROM kept").fetchall() == [(42,)]


def test_after_a_kill_nothing_answers_and_a_start_recovers_every_commit(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("CREATE TABLE kept (value int)")
        connection.execute("INSERT INTO kept VALUES (1)")  # committed just before the crash
    open_session = psycopg.connect(postgres_url)
    postgres_server.kill()
    assert not postgres_server.running
    with pytest.raises(psycopg.OperationalError):
        open_session.execute("SELECT 1")
    open_session.close()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(postgres_url, connect_timeout=2).close()
    postgres_server.start()
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT value FROM kept").fetchall() == [(1,)]


def test_without_server_binaries_the_tests_fail_loudly_and_say_how_to_install_them(tmp_path: Path) -> None:
    with pytest.raises(PostgresError, match=r"make postgres"):
        find_bindir(tmp_path)
    assert find_bindir().name == "bin"  # and this machine has them: `make test` installs them


def test_close_stops_the_server_and_removes_its_directory() -> None:
    server = PostgresServer()
    server.start()
    assert server.startup_seconds < 10
    url = server.create_database()
    server.close()
    assert not server.running
    assert not server.directory.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2).close()
    server.close()  # again: nothing to do


def test_a_port_taken_before_the_server_could_bind_it_is_given_up_for_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        offered = iter([taken.getsockname()[1]])
        free_port = postgres_support._free_port
        monkeypatch.setattr(postgres_support, "_free_port", lambda: next(offered, None) or free_port())
        server = PostgresServer()
        try:
            server.start()
            assert server.running
            assert server.port != taken.getsockname()[1]
        finally:
            server.close()


def test_the_server_goes_down_with_a_pytest_process_killed_before_it_could_clean_up() -> None:
    script = "from tests.postgres_support import PostgresServer; s = PostgresServer(); s.start(); print(s.port)"
    script += "; import os, signal, sys; sys.stdout.flush(); os.kill(os.getpid(), signal.SIGKILL)"
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    port = int(done.stdout)
    deadline = time.monotonic() + 10
    while True:
        try:
            psycopg.connect(f"postgresql://postgres:x@127.0.0.1:{port}/postgres", connect_timeout=1).close()
        except psycopg.OperationalError as error:
            if "password authentication failed" not in str(error):
                break  # nothing listens any more
        assert time.monotonic() < deadline, "the orphaned server is still running"
        time.sleep(0.05)


def test_a_logged_database_password_fails_the_session_and_a_killed_server_is_back_for_the_next_test(
    tmp_path: Path,
) -> None:
    result = run_session(
        tmp_path,
        "test_leak.py",
        """
        import psycopg

        def test_kills_the_server_and_leaves_it_down(postgres_server, postgres_url):
            postgres_server.kill()

        def test_logs_the_url(postgres_url):
            psycopg.connect(postgres_url).close()
            print("connecting to", postgres_url)
        """,
    )
    output = result.stdout + result.stderr
    assert "2 passed" in output, output
    assert result.returncode == 1, output
    assert "a database password created during" in output
    assert "captured stdout call of test_leak.py::test_logs_the_url" in output
