"""The outgoing webhook calls the demo starts with (bot.demo.traffic.STARTUP_CALLS), recorded
through the sandbox's control API over HTTP as the demo does."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from bot.demo.traffic import STARTUP_CALLS, startup_calls
from sandbox.control import SandboxClient
from sandbox.seed import seed_demo
from sandbox.server import SandboxServer


def test_startup_calls_leave_failed_and_successful_history_entries() -> None:
    server = SandboxServer()
    seed_demo(server.store)
    server.start()
    try:
        now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
        with SandboxClient(server.url, server.control_secret) as client:
            failed = startup_calls(client, now=now)
            by_name = {d["name"]: d for d in client.integrations() if d["type"] == "webhook-outgoing"}
            deploy = client.integration_history(by_name["Deploy announcer"]["_id"])
            guggy = client.integration_history(by_name["Guggy"]["_id"])
        assert failed == sum(1 for _n, _m, status, _d in STARTUP_CALLS if status is None or status >= 300) == 5
        assert len(deploy) == 5 and len(guggy) == 3
        assert [json.loads(e["httpResult"]) for e in deploy if e.get("error")] == [
            "Bad Gateway",
            "deploy queue unavailable",
        ]
        assert all(e["httpError"]["code"] == "ENOTFOUND" for e in guggy)
        oldest = min(datetime.fromisoformat(e["_updatedAt"].replace("Z", "+00:00")) for e in deploy)
        assert oldest == now - timedelta(minutes=42)
    finally:
        server.stop()
