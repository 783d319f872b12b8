"""`extend` and `disable … for` while a timed re-enable is writing: the answer is never a lie.

A timed re-enable (bot/incident/timers.py `expire`) holds the integration's lock while it writes
`enabled: true`. An `extend X 1h` (or `disable X for 1h`) that arrives while that write is in
flight used to read the timer row (still `active`), move it, and answer "stays disabled until …";
the re-enable then landed and the integration was on while the responder was told it was off.
Both now decide under the same lock (found in review; 3 s of latency on the write makes the
window wide). Also: a new timed disable of an integration someone switched back on by hand
switches it off again, instead of only re-timing the row.
"""

from __future__ import annotations

import time

import pytest
from e2e_support import REPLY_TIMEOUT, Workspace, unique_name

pytestmark = [pytest.mark.e2e]
PREFIX = "!integration"
LATENCY = 3.0  # on integrations.update: the re-enable's write is in flight this long


@pytest.mark.parametrize("command", ["extend {id} 1h", "disable {id} for 1h"])
def test_keeping_it_off_while_the_timer_fires_is_not_answered_with_a_lie(
    fresh_workspace: Workspace, command: str
) -> None:
    ws = fresh_workspace
    hook = ws.control.create_incoming_integration(unique_name("Timer race"), channel="#general")
    reply = ws.chat.command("admin", "general", f"{PREFIX} disable {hook['_id']} for 3s")["msg"]
    asked = time.monotonic()
    assert "Disabled" in reply, reply
    ws.control.set_latency(LATENCY, "integrations.update")
    time.sleep(max(0.0, asked + 3.8 - time.monotonic()))  # the re-enable is writing now
    answer = ws.chat.reply_to(
        ws.chat.post("admin", "general", f"{PREFIX} {command.format(id=hook['_id'])}"), timeout=REPLY_TIMEOUT
    )["msg"]
    time.sleep(LATENCY + 1.0)  # the re-enable's write has landed
    ws.control.clear_faults()
    stored = ws.control.integration(hook["_id"])
    if "stays disabled" in answer or "now until" in answer:
        assert stored["enabled"] is False, f"answered {answer!r} but the integration is enabled"


def test_a_new_timed_disable_of_one_switched_on_by_hand_switches_it_off(fresh_workspace: Workspace) -> None:
    ws = fresh_workspace
    hook = ws.control.create_incoming_integration(unique_name("Retime"), channel="#general")
    assert "Disabled" in ws.chat.command("admin", "general", f"{PREFIX} disable {hook['_id']} for 1h")["msg"]
    ws.control.update_integration(hook["_id"], {"enabled": True})  # switched on outside the bot
    answer = ws.chat.command("admin", "general", f"{PREFIX} disable {hook['_id']} for 2h")["msg"]
    stored = ws.control.integration(hook["_id"])
    assert stored["enabled"] is False, f"answered {answer!r} but the integration is enabled"
