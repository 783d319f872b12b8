"""Book-keeping after the answer (commands/followups.py): what waits for it, and what it records."""

from __future__ import annotations

import asyncio

import structlog
from set_harness import Harness

from bot.errors import StateUnavailable
from bot.logs import bind, clear, get_logger
from bot.logs import context as logs_context
from commands.followups import Closing, Followups, closing


def gate() -> tuple[asyncio.Event, list[str]]:
    return asyncio.Event(), []


async def test_waiting_for_one_integration_waits_for_its_followups_only() -> None:
    followups = Followups()
    opened, ran = gate()

    async def slow() -> None:
        await opened.wait()
        ran.append("a")

    held = followups.register("a", slow)
    followups.register("b", opened.wait)
    await asyncio.wait_for(followups.settled("c"), 1)  # nothing pending for "c"
    waiter = asyncio.create_task(followups.settled("a"))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    runner = asyncio.create_task(followups.run((held,)))
    await asyncio.sleep(0.01)
    assert not waiter.done()  # still running
    opened.set()
    await asyncio.wait_for(waiter, 1)
    await runner
    assert ran == ["a"]
    assert followups.pending() == 1  # "b" was never run


async def test_waiting_for_all_ignores_followups_registered_later() -> None:
    followups = Followups()
    first = followups.register("a", lambda: asyncio.sleep(0))
    waiter = asyncio.create_task(followups.settled())
    await asyncio.sleep(0)
    followups.register("b", asyncio.Event().wait)  # would never finish
    await followups.run((first,))
    await asyncio.wait_for(waiter, 1)


async def test_a_failing_followup_is_logged_and_still_counts_as_done() -> None:
    followups = Followups()

    async def broken() -> None:
        raise RuntimeError("disk full")

    one = followups.register("a", broken)
    with structlog.testing.capture_logs() as logs:
        await followups.run((one,))
    assert [e["event"] for e in logs] == ["command.followup_failed"]
    assert logs[0]["integration_id"] == "a"
    await asyncio.wait_for(followups.settled(), 1)
    assert followups.pending() == 0


async def test_a_followup_runs_once_however_often_it_is_run() -> None:
    followups = Followups()
    ran: list[int] = []

    async def count() -> None:
        ran.append(1)

    one = followups.register("a", count)
    await followups.run((one,))
    await followups.run((one,))
    assert ran == [1]


async def test_a_disable_answers_before_its_audit_row_and_records_it_once_the_answer_is_out(h: Harness) -> None:
    reply = await h.dispatcher.dispatch(*h.message("admin", "ops", '!integration disable "Jenkins builds"'))
    assert "Disabled" in reply.text
    integration = str(h.seeded["integrations"]["jenkins-builds"]["id"])
    assert await h.services.state.history(integration_ids=[integration]) == []  # not yet: deferred
    assert [f.integration_id for f in reply.afterwards] == [integration]
    await h.services.followups.run(reply.afterwards)
    rows = await h.services.state.history(integration_ids=[integration])
    assert [(r.action, r.before and r.before["enabled"], r.after and r.after["enabled"]) for r in rows] == [
        ("disable", True, False)
    ]


async def test_a_command_about_the_integration_waits_for_the_book_keeping_of_an_answer_already_given(
    h: Harness,
) -> None:
    # Someone saw "Disabled" and types `history` / `undo` at once: the row must be there.
    disabled = await h.dispatcher.dispatch(*h.message("admin", "ops", '!integration disable "Jenkins builds"'))
    history = asyncio.create_task(h.say("admin", "ops", '!integration history "Jenkins builds"'))
    undo = asyncio.create_task(h.say("admin", "ops", "!integration undo"))
    await asyncio.sleep(0.2)
    assert not history.done() and not undo.done()  # waiting for the disable's audit row
    await h.services.followups.run(disabled.afterwards)
    assert "disable" in (await asyncio.wait_for(history, 5)).text
    assert "Jenkins builds" in (await asyncio.wait_for(undo, 5)).text
    integration = h.doc(str(h.seeded["integrations"]["jenkins-builds"]["id"]))
    assert integration["enabled"] is True  # the undo found the disable and reverted it


async def test_a_followup_logs_with_the_context_of_the_command_that_deferred_it() -> None:
    # `grep <correlation id>` must still show a command's whole story, its book-keeping included.
    followups = Followups()

    async def book_keeping() -> None:
        get_logger("t").info("timer.ended")

    bind(correlation_id="c-42", command="disable")
    try:
        one = followups.register("a", book_keeping)
    finally:
        clear()  # the dispatcher clears the context before the answer is posted
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        await followups.run((one,))
    assert [(e["event"], e["correlation_id"], e["command"]) for e in logs] == [("timer.ended", "c-42", "disable")]
    assert logs_context() == {}  # and leaves nothing bound behind it


async def test_only_the_last_follow_up_may_close_the_claim_and_only_after_the_others_succeeded() -> None:
    """The claim closed with a follow-up's own statement (`closing`) would leave an earlier one's
    book-keeping undone for good if that one had failed: it is then closed the usual way, later."""
    followups = Followups()
    seen: list[Closing | None] = []

    async def failing() -> None:
        seen.append(closing("m1"))
        raise StateUnavailable("test", "down")

    async def fine() -> None:
        seen.append(closing("m1"))

    await followups.run((followups.register("a", fine), followups.register("b", fine)), then_close=Closing("m1", "ok"))
    assert seen[0] is None and seen[1] is not None and seen[1].message_id == "m1"
    seen.clear()
    await followups.run(
        (followups.register("a", failing), followups.register("b", fine)), then_close=Closing("m1", "ok")
    )
    assert seen == [None, None]
    assert closing("m1") is None  # outside a run
