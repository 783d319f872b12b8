"""The standalone sandbox (`python -m sandbox`, i.e. `integrations-bot sandbox`) as another process."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.cli import build_parser
from sandbox.control import SandboxClient


def launch(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    credentials = tmp_path / "creds" / "sandbox.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", "0", "--credentials-file", str(credentials), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return process, credentials


def wait_for_credentials(process: subprocess.Popen[bytes], path: Path, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        assert time.monotonic() < deadline, "the sandbox did not write its credentials in time"
        time.sleep(0.02)
    data: dict[str, Any] = json.loads(path.read_text())  # complete at first sight: written by rename
    return data


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any], Path]]:
    process, path = launch(tmp_path)
    try:
        yield process, wait_for_credentials(process, path), path
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stderr:
            process.stderr.close()


def test_credentials_appear_only_once_the_server_accepts_connections(
    sandbox: tuple[subprocess.Popen[bytes], dict[str, Any], Path],
) -> None:
    _process, credentials, path = sandbox
    url = credentials["url"]
    port = int(url.rsplit(":", 1)[1])
    assert port != 0
    with socket.create_connection(("127.0.0.1", port), timeout=1):  # first try, no retry
        pass
    assert httpx.get(f"{url}/api/info", timeout=5).json()["success"] is True
    assert path.stat().st_mode & 0o077 == 0  # secrets: owner only
    assert [p.name for p in path.parent.iterdir()] == ["sandbox.json"]  # no temp file left behind


def test_credentials_describe_a_usable_workspace(sandbox: tuple[subprocess.Popen[bytes], dict[str, Any], Path]) -> None:
    _process, credentials, _path = sandbox
    url = credentials["url"]
    assert set(credentials) == {"url", "users", "rooms", "integrations", "control"}
    bot = credentials["users"]["integrations-bot"]
    assert set(bot) == {"userId", "authToken", "password", "roles"} | {"username"}
    me = httpx.get(
        f"{url}/api/v1/me", headers={"X-User-Id": bot["userId"], "X-Auth-Token": bot["authToken"]}, timeout=5
    )
    assert me.status_code == 200 and me.json()["username"] == "integrations-bot"
    login = httpx.post(
        f"{url}/api/v1/login", json={"user": "alice", "password": credentials["users"]["alice"]["password"]}
    )
    assert login.status_code == 200
    with SandboxClient(credentials["control"]["url"], credentials["control"]["secret"]) as control:
        message = control.post_message("alice", "general", "hello from the test")
        assert control.messages(credentials["rooms"]["general"])[-1]["_id"] == message["_id"]
        assert control.integration(credentials["integrations"]["guggy-incoming"]["id"])["name"] == "Guggy"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_the_sandbox_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    process, path = launch(tmp_path)
    try:
        credentials = wait_for_credentials(process, path)
        process.send_signal(sig)
        assert process.wait(15) == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(credentials["url"].rsplit(":", 1)[1])), timeout=1).close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if process.stderr:
            process.stderr.close()


def test_busy_port_exits_with_an_error_and_no_credentials(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        credentials = tmp_path / "creds.json"
        done = subprocess.run(
            [sys.executable, "-m", "sandbox", "--port", str(port), "--credentials-file", str(credentials)],
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert b"cannot listen" in done.stderr
    assert not credentials.exists()


def test_flags_choose_the_imitated_server(tmp_path: Path) -> None:
    process, path = launch(tmp_path, "--empty", "--legacy-update", "--omitted-ignored", "--rate-limit")
    try:
        credentials = wait_for_credentials(process, path)
        assert credentials["users"] == {} and credentials["integrations"] == {}
        with SandboxClient(credentials["control"]["url"], credentials["control"]["secret"]) as control:
            assert control.configure() == {"update_mode": "legacy", "omitted_as_null": False, "rate_limit": True}
            assert control.integrations() == []
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if process.stderr:
            process.stderr.close()


def test_parser_defaults() -> None:
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.credentials_file) == ("127.0.0.1", 3000, "sandbox-credentials.json")
    assert not (args.legacy_update or args.omitted_ignored or args.rate_limit or args.empty)
