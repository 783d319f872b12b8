"""`noisy` counts what an integration posted: a message carrying its `bot.i` counts for it only
when the user it posts as wrote it (anyone may set `bot.i`, contract §4.7)."""

from __future__ import annotations

from datetime import timedelta

from set_harness import Harness

from bot.rocketchat.messages import ChatMessage
from commands import noisy


def forged(h: Harness, user: str, room: str, integration_id: str) -> ChatMessage:
    """A message `user` posted with `bot: {i: integration_id}` (DDP `sendMessage` lets them)."""
    message = h.chat_message(user, room, "all good, nothing to see")
    return message.model_copy(update={"is_bot": True, "bot_integration_id": integration_id})


def posted_by(h: Harness, room: str, integration_id: str) -> ChatMessage:
    """A message the integration posted: as its post-as user, with its `bot.i`."""
    message = h.chat_message("alice", room, "CPU at 98%")
    poster = h.doc(integration_id)["userId"]
    return message.model_copy(update={"user_id": poster, "is_bot": True, "bot_integration_id": integration_id})


async def test_noisy_does_not_blame_an_integration_for_messages_its_user_did_not_post(h: Harness) -> None:
    """Was: alice (no rights at all) posts 30 messages into #alerts with `bot: {i: <Grafana's
    id>}`; `noisy` counted every message carrying `bot.i`, so the admin's `noisy` answered
    "30 messages · `Grafana`" with a [Disable Grafana for 1 h] button, and Grafana, which posted
    nothing, was the one switched off."""
    toolkit = h.with_incident_toolkit()
    grafana = h.seeded["integrations"]["grafana"]["id"]
    h.clock.advance(timedelta(minutes=10))  # the window covers the last few minutes: no backfill
    for _ in range(30):
        toolkit.observe(forged(h, "alice", "alerts", grafana))
    reply = await h.say("admin", "alerts", "!integration noisy 5")
    assert grafana not in reply.text and "Grafana" not in reply.text, reply.text
    assert all(grafana not in button.command for button in reply.buttons), reply.buttons


async def test_noisy_counts_only_what_the_integration_posted_among_forgeries(h: Harness) -> None:
    toolkit = h.with_incident_toolkit()
    grafana = h.seeded["integrations"]["grafana"]["id"]
    h.clock.advance(timedelta(minutes=10))
    for _ in range(30):
        toolkit.observe(forged(h, "alice", "alerts", grafana))
    for _ in range(3):
        toolkit.observe(posted_by(h, "alerts", grafana))
    reply = await h.say("admin", "alerts", "!integration noisy 5")
    assert "(3 messages)" in reply.text and "3 messages · " in reply.text, reply.text
    assert "30 messages" not in reply.text and "33 messages" not in reply.text, reply.text
    assert [button.command for button in reply.buttons if grafana in button.command], reply.buttons


async def test_forging_many_integrations_costs_noisy_a_bounded_number_of_reads(h: Harness) -> None:
    """alice puts the ids of 40 integrations on her messages: each must be read to tell, so one
    `noisy` reads at most MAX_READS of them and says it left the rest out."""
    toolkit = h.with_incident_toolkit()
    h.clock.advance(timedelta(minutes=10))
    made = [h.control.create_incoming_integration(f"Hook {n}", channel="#alerts") for n in range(40)]
    for hook in made:
        toolkit.observe(forged(h, "alice", "alerts", hook["_id"]))
    before = len(h.calls)
    reply = await h.say("admin", "alerts", "!integration noisy 5")
    reads = sum(1 for call in h.calls[before:] if call.endpoint == "integrations.get")
    assert reads <= noisy.MAX_READS, reads
    assert reply.outcome == "empty" and "left out" in reply.text, reply.text
    assert reply.buttons == ()
