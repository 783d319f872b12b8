"""Issue 16 with several replicas: each replica sees every webhook message, so each counts the
same flood; the shared database decides, so there is exactly one notice and at most one disable
(BOT_FLOOD_ACTION=disable), made once and audited once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import BOT_USERNAME, unique_name
from replica_support import Replicas, running, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-flood-replicas")]


@pytest.fixture
def replicas(tmp_path: Path, postgres_url: str) -> Iterator[Replicas]:
    with running(tmp_path, postgres_url, BOT_FLOOD_ACTION="disable", BOT_FLOOD_DISABLE_FOR="1h") as replicas:
        yield replicas


def flood_outcomes(replicas: Replicas, integration: dict[str, Any]) -> list[str]:
    return sorted(
        str(e["outcome"])
        for bot in replicas.bots
        for e in bot.logs()
        if e.get("event") == "flood.seen" and e.get("integration_id") == integration["_id"]
    )


def test_two_replicas_seeing_one_flood_post_one_notice_and_disable_once(replicas: Replicas) -> None:
    replicas.start(2)
    control = replicas.control
    control.create_room("flooded", members=["admin", "owen", BOT_USERNAME], owner="admin")
    hook = control.create_incoming_integration(unique_name("Hook"), channel="#flooded", created_by="admin")
    for n in range(20):
        control.post_webhook_message(hook["_id"], f"alert {n}", room="flooded")

    wait_until(lambda: len(flood_outcomes(replicas, hook)) == 2, 20, "both replicas handled the flood")
    assert flood_outcomes(replicas, hook) == ["disabled", "quiet"]
    notices = [m for m in control.messages("flooded") if m["u"]["username"] == BOT_USERNAME]
    assert len(notices) == 1 and "so I disabled it until" in notices[0]["msg"], notices
    assert replicas.writes()[hook["_id"]] == 1
    assert control.integration(hook["_id"])["enabled"] is False
    rows = replicas.rows("SELECT state, actor_username, reason FROM timers WHERE integration_id = %s", (hook["_id"],))
    assert rows == [("active", BOT_USERNAME, "flood guard")]
    audits = replicas.rows("SELECT action FROM audit WHERE integration_id = %s", (hook["_id"],))
    assert audits == [("disable",)]
