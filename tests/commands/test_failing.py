"""`failing [minutes]` on the in-process harness: who sees which webhook, the window, the counts,
the error line, the buttons, and the refusals."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from set_harness import Harness

from bot.errors import Unavailable
from bot.rocketchat.models import HistoryPage

TOKEN = "tok-Zq8w3PZ8sL2d1Xy0abcd"
PASSWORD = "pa55-w0rd-x9"
URL = f"https://deployer:{PASSWORD}@hooks.example.org/T01/B02/xyzSECRETpath?api_key=QUERYSECRET77"


def _ago(h: Harness, minutes: float) -> str:
    return (h.clock.now - timedelta(minutes=minutes)).isoformat()


def _outgoing(h: Harness, name: str, *, created_by: str, enabled: bool = True) -> str:
    doc = h.control.create_outgoing_integration(
        name, channel="#ops", urls=[URL], created_by=created_by, token=TOKEN, trigger_words=["!x"], enabled=enabled
    )
    return str(doc["_id"])


async def test_admin_sees_each_failing_webhook_with_counts_and_the_last_error(h: Harness) -> None:
    mine = _outgoing(h, "Owen deploys", created_by="owen")
    admins = _outgoing(h, "Admin pager", created_by="admin")
    quiet = _outgoing(h, "Quiet hook", created_by="admin")
    h.control.record_outgoing_call(mine, status=200, body="ok", at=_ago(h, 30))
    h.control.record_outgoing_call(mine, status=500, body="queue down", at=_ago(h, 20))
    h.control.record_outgoing_call(mine, status=502, body="Bad Gateway", at=_ago(h, 10))
    h.control.record_outgoing_call(admins, error_code="ECONNREFUSED", at=_ago(h, 5))
    h.control.record_outgoing_call(quiet, status=200, body="ok", at=_ago(h, 5))
    reply = await h.say("admin", "ops", "!integration failing")
    lines = [line for line in reply.text.splitlines() if line.startswith("• ")]
    assert len(lines) == 2, reply.text
    assert "Owen deploys" in lines[0] and "2 of 3 calls failed" in lines[0] and "10 min ago" in lines[0]
    assert "failed (an error status or an empty answer): Bad Gateway" in lines[0]
    assert "Admin pager" in lines[1] and "1 of 1 call failed" in lines[1]
    assert "connect ECONNREFUSED hooks.example.org:443" in lines[1] and "https://hooks.example.org/…" in lines[1]
    assert "Quiet hook" not in reply.text
    assert [b.text for b in reply.buttons] == ["Disable Owen deploys", "Disable Admin pager"]
    assert reply.buttons[0].command == f"!integration disable {mine} -- failing: 2 failed calls in 1 h"


async def test_no_token_password_path_or_query_ever_shows(h: Harness) -> None:
    hook = _outgoing(h, "Leaky", created_by="admin")
    h.control.record_outgoing_call(hook, status=500, body=f"rejected token={TOKEN} from {URL}", at=_ago(h, 1))
    h.control.record_outgoing_call(hook, error_code="ENOTFOUND", at=_ago(h, 2))
    reply = await h.say("admin", "ops", "!integration failing")
    assert "Leaky" in reply.text
    for secret in (TOKEN, PASSWORD, "xyzSECRETpath", "QUERYSECRET77", "deployer"):
        assert secret not in reply.text, reply.text
        assert all(secret not in b.command for b in reply.buttons)


async def test_an_own_only_caller_sees_only_their_own_webhooks(h: Harness) -> None:
    mine = _outgoing(h, "Owen deploys", created_by="owen")
    hidden = _outgoing(h, "Admin pager", created_by="admin")
    for hook in (mine, hidden):
        h.control.record_outgoing_call(hook, status=500, body="down", at=_ago(h, 3))
    reply = await h.say("owen", "ops", "!integration failing")
    assert "Owen deploys" in reply.text
    assert "Admin pager" not in reply.text and hidden not in reply.text
    assert [b.command.split()[2] for b in reply.buttons] == [mine]


async def test_the_window_leaves_out_older_calls(h: Harness) -> None:
    hook = _outgoing(h, "Flaky", created_by="admin")
    h.control.record_outgoing_call(hook, status=500, body="old", at=_ago(h, 50))
    h.control.record_outgoing_call(hook, status=200, body="ok", at=_ago(h, 5))
    assert "1 of 2 calls failed" in (await h.say("admin", "ops", "!integration failing")).text
    recent = await h.say("admin", "ops", "!integration failing 15")
    assert recent.outcome == "empty" and recent.text.startswith("No failed calls in the last 15 min"), recent.text
    longer = await h.say("admin", "ops", "!integration failing 2h")
    assert "last 2 h" in longer.text and "Flaky" in longer.text


async def test_a_disabled_webhook_is_listed_without_a_button(h: Harness) -> None:
    hook = _outgoing(h, "Gone hook", created_by="admin")
    h.control.record_outgoing_call(hook, status=410, body="gone", at=_ago(h, 2))  # Rocket.Chat disables it
    reply = await h.say("admin", "ops", "!integration failing")
    assert "Gone hook" in reply.text and "HTTP 410 (Gone" in reply.text
    assert all(hook not in b.command for b in reply.buttons)


async def test_the_button_disables_the_webhook_as_whoever_taps_it(h: Harness) -> None:
    hook = _outgoing(h, "Admin pager", created_by="admin")
    h.control.record_outgoing_call(hook, status=500, body="down", at=_ago(h, 2))
    button = (await h.say("admin", "ops", "!integration failing")).buttons[0]
    refused = await h.say("owen", "ops", button.command)
    assert h.doc(hook)["enabled"] is True, refused.text
    done = await h.say("admin", "ops", button.command)
    assert done.outcome == "changed" and h.doc(hook)["enabled"] is False, done.text


async def test_refusals_and_bad_input(h: Harness) -> None:
    refused = await h.say("alice", "ops", "!integration failing")
    assert "manage-outgoing-integrations" in refused.text and "failed" not in refused.text
    bad = await h.say("admin", "ops", "!integration failing soon")
    assert bad.outcome != "ok" and "failing" in bad.text
    too_long = await h.say("admin", "ops", "!integration failing 30d")
    assert "the longest allowed is 7 d" in too_long.text


async def test_nothing_failing_is_a_short_answer(h: Harness) -> None:
    reply = await h.say("admin", "ops", "!integration failing")
    assert reply.outcome == "empty"
    assert reply.text.startswith("No failed calls in the last 1 h from the "), reply.text


async def test_history_is_read_page_by_page_up_to_a_cap(h: Harness) -> None:
    long = _outgoing(h, "Busy hook", created_by="admin")
    capped = _outgoing(h, "Very busy hook", created_by="admin")
    for n in range(150):
        h.control.record_outgoing_call(long, status=500, body=f"n{n}", at=_ago(h, 50 - n * 0.3))
    for n in range(310):
        h.control.record_outgoing_call(capped, status=500, body=f"n{n}", at=_ago(h, 40 - n * 0.1))
    reply = await h.say("admin", "ops", "!integration failing")
    busy = next(line for line in reply.text.splitlines() if "`Busy hook`" in line)
    very = next(line for line in reply.text.splitlines() if "`Very busy hook`" in line)
    assert "150 of 150 calls failed" in busy and "n149" in busy, busy  # two pages, the newest last error
    assert "at least 300 of 300 calls failed" in very, very


async def test_an_unreadable_history_is_said_and_all_unreadable_is_an_error(h: Harness) -> None:
    readable = _outgoing(h, "Readable", created_by="admin")
    broken = _outgoing(h, "Broken", created_by="admin")
    h.control.record_outgoing_call(readable, status=500, body="down", at=_ago(h, 2))
    rest = h.services.rest
    original = rest.integrations_history
    refused: set[str] = {broken}

    async def flaky(integration_id: str, **kwargs: Any) -> HistoryPage:
        if integration_id in refused:
            raise Unavailable("integrations.history", "integrations.history: Rocket.Chat is unavailable (503)")
        return await original(integration_id, **kwargs)

    rest.integrations_history = flaky  # type: ignore[method-assign]
    some = await h.say("admin", "ops", "!integration failing")
    assert "Readable" in some.text and "(The history of 1 webhook could not be read just now.)" in some.text
    refused.add(readable)
    refused.update(str(d["_id"]) for d in h.control.integrations() if d["type"] == "webhook-outgoing")
    none = await h.say("admin", "ops", "!integration failing")
    assert none.outcome == "unavailable" and "Rocket.Chat is not answering" in none.text, none.text
