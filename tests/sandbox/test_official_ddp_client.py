"""Rocket.Chat's official DDP client (npm @rocket.chat/ddp-client) against the standalone sandbox.

The node project lives in tests/ddp_client_js (`make jsdeps` installs it from its lock file).
The client logs in with a seeded user's resume token, subscribes to `stream-room-messages` for
#general, and must receive the message this test posts through REST `chat.sendMessage`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import httpx

JS_DIR = Path(__file__).resolve().parents[1] / "ddp_client_js"
SCRIPT = JS_DIR / "receive-message.mjs"


def node_command() -> list[str]:
    node = shutil.which("node")
    assert node is not None, "node is required for the official DDP client proof"
    assert (JS_DIR / "node_modules" / "@rocket.chat" / "ddp-client").is_dir(), "run `make jsdeps` first"
    major = int(
        subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout[1:].split(".")[0]
    )
    # Node 20 has the WHATWG WebSocket the client needs only behind a flag; 22+ has it by default.
    return [node, "--experimental-websocket"] if major < 22 else [node]


def read_json_line(stream: IO[str], timeout: float) -> dict[str, Any]:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert box and box[0], "the node client printed nothing in time"
    line: dict[str, Any] = json.loads(box[0])
    return line


def test_official_client_receives_a_message_posted_over_rest(tmp_path: Path) -> None:
    command = node_command()
    credentials_path = tmp_path / "credentials.json"
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", "0", "--credentials-file", str(credentials_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 30
        while not credentials_path.exists():
            assert sandbox.poll() is None and time.monotonic() < deadline, "the sandbox did not come up"
            time.sleep(0.02)
        credentials = json.loads(credentials_path.read_text())
        url, general = credentials["url"], credentials["rooms"]["general"]
        bot, alice = credentials["users"]["integrations-bot"], credentials["users"]["alice"]

        client = subprocess.Popen(
            [*command, str(SCRIPT), url, bot["authToken"], general],
            cwd=JS_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None
        ready = read_json_line(client.stdout, 30)
        assert ready["event"] == "ready" and ready["userId"] == bot["userId"]
        assert set(ready["tokenExpires"]) == {"$date"}

        response = httpx.post(
            f"{url}/api/v1/chat.sendMessage",
            json={"message": {"rid": general, "msg": "/integration disable Guggy"}},
            headers={"X-User-Id": alice["userId"], "X-Auth-Token": alice["authToken"]},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        sent = response.json()["message"]

        received = read_json_line(client.stdout, 30)
        assert received["event"] == "message"
        message = received["message"]
        assert message["_id"] == sent["_id"] and message["rid"] == general
        assert message["msg"] == "/integration disable Guggy" and message["u"]["username"] == "alice"
        assert set(message["ts"]) == {"$date"}
        assert client.wait(15) == 0, client.stderr.read() if client.stderr else ""
    finally:
        for process in (client, sandbox):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)
        if client is not None:
            for pipe in (client.stdout, client.stderr):
                if pipe is not None:
                    pipe.close()
