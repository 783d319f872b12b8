"""Finding the integration a command names (commands/targets.py), and refusing in the command's terms."""

from __future__ import annotations

import pytest
from set_harness import Harness

EVERY = (
    "`manage-incoming-integrations`, `manage-own-incoming-integrations`, "
    "`manage-outgoing-integrations`, `manage-own-outgoing-integrations`"
)


@pytest.mark.parametrize(
    ("command", "action"),
    [
        ("disable Guggy", "disable integrations"),
        ("disable Guggy for 30m because spam", "disable integrations"),
        ("enable Guggy", "enable integrations"),
        ("show Guggy", "look at integrations"),
        ("set Guggy alias=x", "change integrations"),
        ("extend Guggy 1h", "extend timed disables of integrations"),
    ],
)
async def test_a_caller_without_rights_is_refused_in_terms_of_the_command(
    h: Harness, command: str, action: str
) -> None:
    """Was: alice's `disable Guggy` answered "You can't look up integrations" (the lookup inside);
    now the refusal is about what she asked for."""
    before = h.writes()
    reply = await h.say("alice", "general", f"!integration {command}")
    assert reply.outcome == "denied"
    assert reply.text == f"⛔ You can't {action}: you need one of {EVERY}."
    assert h.writes() == before


async def test_a_kind_narrows_the_refusal_to_that_kind_s_permissions(h: Harness) -> None:
    reply = await h.say("alice", "general", "!integration disable incoming Guggy")
    assert reply.text == (
        "⛔ You can't disable incoming integrations: you need `manage-incoming-integrations` or "
        "`manage-own-incoming-integrations`."
    )


async def test_a_refusal_quotes_the_name_in_backticks_like_every_reply(h: Harness) -> None:
    """Was: "You can't change integration 'Quote *probe*'" (Python's quotes, and the name's
    markdown neutralised into look-alikes); names are quoted one way in every reply: a code span."""
    h.control.create_room("quote-probe-room", members=["admin"], owner="admin")
    h.control.create_incoming_integration("Quote *probe*", channel="#quote-probe-room", created_by="owen")
    reply = await h.say("owen", "general", '!integration disable "Quote *probe*"')
    assert reply.outcome == "denied", reply.text
    assert reply.text.startswith("⛔ You can't change `Quote *probe*`: "), reply.text


async def test_an_unbalanced_quote_is_pointed_at_in_backticks(h: Harness) -> None:
    reply = await h.say("admin", "general", '!integration disable "Noisy hook for 1h')
    assert 'unbalanced quote near `"Noisy`' in reply.text, reply.text


async def test_disable_with_many_words_does_not_look_each_reading_up(h: Harness) -> None:
    """`!integration disable ab ab ab …` (300 words, from anyone who may manage their own
    integrations): every run of first words was looked up as a name, one `integrations.list`
    (paged fully) per word: 301 REST calls and seconds of the event loop for one chat message
    (1650 words fit in 5000 characters). The number of calls must not grow with the words typed."""
    before = len(h.calls)
    reply = await h.say("owen", "general", "!integration disable " + "ab " * 300)
    assert reply.outcome == "not-found", reply.text
    lists = sum(1 for call in h.calls[before:] if call.endpoint == "integrations.list")
    assert lists <= 2, lists


async def test_a_name_and_a_reason_are_found_with_one_listing(h: Harness) -> None:
    """`disable Grafana spamming the channel`: the four readings are matched against one listing."""
    before = len(h.calls)
    reply = await h.say("admin", "alerts", "!integration disable Grafana spamming the channel")
    assert reply.outcome == "changed", reply.text
    assert "Reason: spamming the channel" in reply.text, reply.text
    lists = [call for call in h.calls[before:] if call.endpoint == "integrations.list"]
    assert len(lists) == 1, lists


@pytest.mark.parametrize("name", ["Bob\u2019s hook", "Jenkins \u2013 nightly", "Cafe\u0301 two", "Two  spaces"])
async def test_a_name_with_phone_punctuation_is_found_when_typed_as_list_shows_it(h: Harness, name: str) -> None:
    """Names made in a client with smart punctuation (`Bob’s hook`, `Jenkins – nightly`), with
    two spaces, or with a decomposed accent (`Cafe\u0301`, as macOS writes it) could not be named at
    all: the typed name is normalised (`Bob's hook`, `Jenkins -- nightly`) and then searched for
    with the server's substring search, which never finds the stored spelling; "did you mean"
    suggested the very name typed, which failed again. Typed as `list` shows it, it is found."""
    made = h.control.create_incoming_integration(name, channel="#general", created_by="admin")
    reply = await h.say("admin", "general", f'!integration show "{name}"')
    assert reply.outcome == "ok", reply.text
    assert made["_id"] in reply.text
    disabled = await h.say("admin", "general", f'!integration disable "{name}" because phone')
    assert disabled.outcome == "changed", disabled.text
    assert h.doc(made["_id"])["enabled"] is False


@pytest.mark.parametrize("typed", ["Bob\u2019s hook", "Bob's hook"])
async def test_two_names_that_normalise_alike_are_both_offered(h: Harness, typed: str) -> None:
    """`Bob’s hook` (a phone's apostrophe) and `Bob's hook` read the same: whichever is typed,
    nothing is changed and both are listed with their ids, as for other look-alikes."""
    curly = h.control.create_incoming_integration("Bob\u2019s hook", channel="#general", created_by="admin")
    plain = h.control.create_incoming_integration("Bob's hook", channel="#general", created_by="admin")
    reply = await h.say("admin", "general", f'!integration disable "{typed}"')
    assert reply.outcome == "ambiguous", reply.text
    assert curly["_id"] in reply.text and plain["_id"] in reply.text
    assert h.doc(curly["_id"])["enabled"] is True and h.doc(plain["_id"])["enabled"] is True


async def test_a_decoy_named_after_a_name_and_a_reason_does_not_take_the_admins_disable(h: Harness) -> None:
    """owen (own integrations only) plants an incoming webhook named `Grafana spamming`. When
    Grafana floods, the admin types the natural `!integration disable Grafana spamming the channel`:
    the longest run of first words that named a visible integration was taken as the name, so
    owen's decoy was switched off and Grafana kept posting. Two readings that name two different
    integrations change nothing: the bot asks, listing both with their ids."""
    real = h.seeded["integrations"]["grafana"]["id"]
    decoy = h.control.create_incoming_integration("Grafana spamming", channel="#alerts", created_by="owen")
    reply = await h.say("admin", "alerts", "!integration disable Grafana spamming the channel")
    assert h.doc(decoy["_id"])["enabled"] is True, reply.text
    assert h.doc(real)["enabled"] is True, reply.text
    assert reply.outcome == "ambiguous", reply.text
    assert real in reply.text and decoy["_id"] in reply.text
    assert "double quotes" in reply.text, reply.text


@pytest.mark.parametrize(
    ("typed", "meant", "reason"),
    [('"Grafana" spamming the channel', "grafana", "spamming the channel"), ('"Grafana spamming" now', None, "now")],
)
async def test_a_quoted_name_says_which_reading_is_meant(
    h: Harness, typed: str, meant: str | None, reason: str
) -> None:
    decoy = h.control.create_incoming_integration("Grafana spamming", channel="#alerts", created_by="owen")
    wanted = h.seeded["integrations"][meant]["id"] if meant else decoy["_id"]
    reply = await h.say("admin", "alerts", f"!integration disable {typed}")
    assert reply.outcome == "changed", reply.text
    assert f"Reason: {reason}" in reply.text, reply.text
    assert h.doc(wanted)["enabled"] is False


@pytest.mark.parametrize("typed", ["Ed's bot", '"Ed\'s bot"'], ids=["unquoted", "quoted"])
async def test_a_plain_twin_of_a_name_stored_with_a_phone_apostrophe_is_not_picked_silently(
    h: Harness, typed: str
) -> None:
    """Was (review49): the admin's `Ed’s bot` was made on a phone (a curly apostrophe). owen, who may manage only
    his own integrations, makes `Ed's bot` (a plain one). The two read alike, so the bot is meant to
    list both and change nothing (as it does for `Bob’s hook`/`Bob's hook`). Typed unquoted, though,
    the one search made is for the whole first word `Ed's` (its plain runs, `Ed` and `s`, are shorter
    than MIN_SEARCH), which the server never finds in `Ed’s bot`; owen's twin is found, so the
    full listing that would find the admin's is never read, and owen's decoy is switched off while
    the admin's keeps posting. Quoted (one reading, searched for `bot`), both are found and listed."""
    real = h.control.create_incoming_integration("Ed\u2019s bot", channel="#general", created_by="admin")
    twin = h.control.create_incoming_integration("Ed's bot", channel="#general", created_by="owen")
    reply = await h.say("admin", "general", f"!integration disable {typed}")
    assert h.doc(twin["_id"])["enabled"] is True, reply.text
    assert h.doc(real["_id"])["enabled"] is True, reply.text
    assert reply.outcome == "ambiguous", reply.text
    assert real["_id"] in reply.text and twin["_id"] in reply.text
