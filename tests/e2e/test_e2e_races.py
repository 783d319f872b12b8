"""Two people change one integration at the same moment: every change that is answered is stored.

`integrations.update` is a full replacement with no compare-and-set, so two read-modify-writes of
one integration that interleave lose one of them silently (a `set` that read the integration
before a `disable` landed writes `enabled: true` back). The bot serialises them per integration
(bot/integrations/locks.py). These tests race commands of two people through the real bot process, over both
integration types and both update behaviours of the server, with some latency on
`integrations.update` so that the windows are wide, and check each answered change in the stored
documents (nothing else changed either). The timer variant adds a timed re-enable firing while
two `set`s arrive.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import BOT_USERNAME, REPLY_TIMEOUT, Workspace, running_workspace, unique_name

from sandbox.config import SandboxConfig

pytestmark = pytest.mark.e2e

MODES = [
    pytest.param("8.x", marks=pytest.mark.xdist_group("e2e-races-8x"), id="8.x"),
    pytest.param("legacy", marks=pytest.mark.xdist_group("e2e-races-legacy"), id="legacy"),
]
ROOM = "races"
PREFIX = "!integration"
PAIRS_PER_TYPE = 13  # x 2 types x 2 modes = 52 racing pairs
TIMED_PER_TYPE = 2
WRITE_LATENCY = 0.05  # seconds on every integrations.update: the read-modify-write window
# Fields the server rewrites on every save, or derives: never compared.
SERVER_MANAGED = ("_updatedAt", "_updatedBy", "userId", "scriptCompiled", "scriptError")


@pytest.fixture(params=MODES)
def workspace(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workspace]:
    with running_workspace(tmp_path, SandboxConfig(update_mode=request.param)) as ws:
        # Two responders per integration, each pair of its own: nobody's commands wait behind
        # their own earlier ones (the per-person turns), so every pair really runs at once.
        for pair in range(2 * PAIRS_PER_TYPE):
            for side in "ab":
                ws.control.create_user(responder(side, pair), roles=["admin"])
        members = ["admin", *(responder(side, p) for p in range(2 * PAIRS_PER_TYPE) for side in "ab")]
        ws.control.create_room(ROOM, members=[*members, BOT_USERNAME], owner="admin")
        ws.control.set_latency(WRITE_LATENCY, "integrations.update")
        yield ws


def responder(side: str, pair: int) -> str:
    return f"responder-{side}{pair}"


def make_hooks(ws: Workspace, count: int) -> list[dict[str, Any]]:
    hooks: list[dict[str, Any]] = []
    for index in range(count):
        hooks.append(
            ws.control.create_incoming_integration(
                unique_name("Race in"), channel=["#general"], alias="before", emoji=":bell:", script="class Script {}"
            )
        )
        hooks.append(
            ws.control.create_outgoing_integration(
                unique_name("Race out"),
                channel=["#general"],
                urls=[f"https://hooks.example.org/{index}"],
                trigger_words=["!race", "!run"],
                token=f"race-token-{index}",
                alias="before",
                emoji=":bell:",
                retry_failed_calls=True,
                retry_count=6,
                retry_delay="powers-of-two",
                run_on_edits=True,
            )
        )
    return hooks


def stable(document: dict[str, Any]) -> dict[str, Any]:
    """The fields a change could lose (an incoming update stores an absent `skipTranspile` as false)."""
    return {
        k: v
        for k, v in document.items()
        if k not in SERVER_MANAGED and v is not None and not (k == "skipTranspile" and v is False)
    }


def answers(ws: Workspace, posted: list[dict[str, Any]]) -> list[str]:
    return [ws.chat.reply_to(message, timeout=REPLY_TIMEOUT * 3)["msg"] for message in posted]


def test_racing_changes_of_one_integration_are_all_stored(workspace: Workspace) -> None:
    ws = workspace
    hooks = make_hooks(ws, PAIRS_PER_TYPE)
    # Every pair is posted back to back by two people, all pairs at once (one integration each).
    races: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]] = []
    for index, hook in enumerate(hooks):
        name = hook["name"]
        first = {"alias": f"set-{index}"}
        second: dict[str, Any] = {"enabled": False} if index % 2 == 0 else {"emoji": ":tada:"}
        first_text = f'{PREFIX} set "{name}" alias="set-{index}" --yes'
        second_text = f'{PREFIX} disable "{name}"' if index % 2 == 0 else f'{PREFIX} set "{name}" emoji=:tada: --yes'
        a = ws.chat.post(responder("a", index), ROOM, first_text)
        b = ws.chat.post(responder("b", index), ROOM, second_text)
        races.append((hook, a, b, {**first, **second}))
    lost: list[str] = []
    for hook, a, b, expected in races:
        first_answer, second_answer = answers(ws, [a, b])
        assert first_answer.startswith("✅ Changed"), first_answer
        assert second_answer.startswith(("✅ Changed", "🔴 Disabled")), second_answer
        stored = ws.control.integration(hook["_id"])
        want = stable({**hook, **expected})
        if stable(stored) != want:
            diff = {k: (want.get(k), stable(stored).get(k)) for k in set(want) | set(stable(stored))}
            lost.append(f"{hook['name']}: " + str({k: v for k, v in diff.items() if v[0] != v[1]}))
    assert not lost, f"{len(lost)} of {len(races)} racing pairs lost a change:\n" + "\n".join(lost)


def test_a_timed_reenable_firing_between_two_changes_loses_neither(workspace: Workspace) -> None:
    ws = workspace
    hooks = make_hooks(ws, TIMED_PER_TYPE)
    for hook in hooks:
        reply = ws.chat.command("admin", ROOM, f"{PREFIX} disable {hook['_id']} for 1s")["msg"]
        assert "Disabled" in reply, reply
    due = time.monotonic() + 1.0
    time.sleep(max(0.0, due - time.monotonic() - WRITE_LATENCY))  # the changes arrive as the timers fire
    posted = []
    for index, hook in enumerate(hooks):
        posted.append(
            ws.chat.post(responder("a", index), ROOM, f'{PREFIX} set {hook["_id"]} alias="timed-{index}" --yes')
        )
        posted.append(ws.chat.post(responder("b", index), ROOM, f"{PREFIX} set {hook['_id']} emoji=:tada: --yes"))
    replies = answers(ws, posted)
    assert all(r.startswith("✅ Changed") for r in replies), replies
    for index, hook in enumerate(hooks):
        label = f"`{hook['name']}`"
        notice = ws.control.wait_for_message(
            ROOM,
            lambda m, label=label: m["u"]["username"] == BOT_USERNAME and label in m["msg"] and "back on" in m["msg"],
            timeout=REPLY_TIMEOUT,
        )["msg"]
        stored = ws.control.integration(hook["_id"])
        # Both changes are stored whatever the timer did; the timer either switched it on (before
        # or after them: they change other fields) or saw them and left it off, and says which.
        assert stored["alias"] == f"timed-{index}" and stored["emoji"] == ":tada:", stored
        reenabled = "is back on" in notice
        assert stored["enabled"] is reenabled, (notice, stored["enabled"])
        want = stable({**hook, "alias": f"timed-{index}", "emoji": ":tada:", "enabled": reenabled})
        assert stable(stored) == want
