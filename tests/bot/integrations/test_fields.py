"""The field catalogue and the pure planner behind `set` (bot/integrations/fields.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from integration_docs import branch_properties, update_validator

from bot.errors import UserInputError
from bot.integrations.fields import (
    EVENTS,
    FIELDS,
    NOT_SETTABLE,
    RETRY_DELAYS,
    Invalid,
    find_field,
    plan_changes,
)
from bot.integrations.service import build_update_body, updatable_fields
from bot.rocketchat.models import INCOMING, OUTGOING

TOKEN = "tok-3f9a-very-secret"


@dataclass(frozen=True)
class A:
    """An assignment as commands.args makes it."""

    field: str
    value: str
    op: str = "set"

    @property
    def raw_field(self) -> str:
        return self.field


def incoming(**extra: Any) -> dict[str, Any]:
    doc = {
        "_id": "in1",
        "type": INCOMING,
        "name": "Guggy",
        "enabled": True,
        "username": "rocket.cat",
        "channel": ["#general"],
        "alias": "guggy",
        "emoji": ":ghost:",
        "avatar": "https://example.org/a.png",
        "scriptEnabled": False,
        "token": "incoming-token-abcdef",
        "_createdBy": {"_id": "u1", "username": "admin"},
    }
    doc.update(extra)
    return doc


def outgoing(**extra: Any) -> dict[str, Any]:
    doc = {
        "_id": "out1",
        "type": OUTGOING,
        "name": "Deploys",
        "enabled": True,
        "event": "sendMessage",
        "username": "rocket.cat",
        "channel": ["#general"],
        "urls": ["https://deploy.example.org/hook?secret=1"],
        "triggerWords": ["!deploy", "!build"],
        "token": TOKEN,
        "retryFailedCalls": True,
        "retryCount": 6,
        "retryDelay": "powers-of-ten",
        "scriptEnabled": False,
        "_createdBy": {"_id": "u1", "username": "admin"},
    }
    doc.update(extra)
    return doc


def plan(doc: dict[str, Any], *assignments: A) -> dict[str, Any]:
    return plan_changes(doc, assignments).updates


def refusal(doc: dict[str, Any], *assignments: A, rooms: tuple[str, ...] = ()) -> str:
    with pytest.raises(UserInputError) as caught:
        plan_changes(doc, assignments, rooms=rooms)
    return str(caught.value)


# --- the catalogue ---------------------------------------------------------------------------------


def test_every_field_is_one_the_update_accepts_for_its_types() -> None:
    for spec in FIELDS:
        for kind in spec.kinds:
            assert spec.key in updatable_fields(kind), (spec.key, kind)
            # The outgoing branch of the official schema is closed: the key must be one of its properties.
            if kind == OUTGOING:
                assert spec.key in branch_properties(OUTGOING)


def test_the_issue_fields_and_their_friendly_names_are_found_case_insensitively() -> None:
    expected = {
        "name": "name",
        "CHANNEL": "channel",
        "username": "username",
        "post-as": "username",
        "postas": "username",
        "alias": "alias",
        "avatar": "avatar",
        "emoji": "emoji",
        "scriptenabled": "scriptEnabled",
        "script_enabled": "scriptEnabled",
        "event": "event",
        "url": "urls",
        "URLs": "urls",
        "triggers": "triggerWords",
        "trigger": "triggerWords",
        "trigger-words": "triggerWords",
        "targetRoom": "targetRoom",
        "targetChannel": "targetRoom",
        "token": "token",
        "retryFailedCalls": "retryFailedCalls",
        "retry-count": "retryCount",
        "retryDelay": "retryDelay",
        "runOnEdits": "runOnEdits",
        "triggerWordAnywhere": "triggerWordAnywhere",
        "impersonateUser": "impersonateUser",
        "room": "channel",
        "channels": "channel",
    }
    for word, key in expected.items():
        assert find_field(word).key == key, word


def test_names_and_aliases_are_unambiguous_and_never_a_refused_word() -> None:
    squashed = [re.sub(r"[\s_.\-]", "", w).casefold() for s in FIELDS for w in (s.key, *s.aliases)]
    assert len(squashed) == len(set(squashed))
    assert not set(squashed) & set(NOT_SETTABLE)


def test_unknown_field_names_suggest_and_never_echo_the_value() -> None:
    with pytest.raises(Invalid) as caught:
        find_field("tokn")
    assert "Did you mean `token`?" in str(caught.value)
    text = refusal(outgoing(), A("tokn", "my-secret-value"))
    assert "my-secret-value" not in text
    assert "tokn" in text


@pytest.mark.parametrize(
    ("word", "hint"),
    [
        ("enabled", "enable and disable commands"),
        ("script", "scripts can't be changed from chat"),
        ("scriptEngine", "can't be changed from chat"),
        ("type", "type can't change"),
    ],
)
def test_fields_that_are_not_set_from_chat_say_what_to_do(word: str, hint: str) -> None:
    text = refusal(incoming(), A(word, "class Script {}"))
    assert hint in text
    assert "class Script" not in text  # a script body is never echoed


# --- values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "stored"), [("yes", True), ("On", True), ("true", True), ("no", False), ("off", False)]
)
def test_booleans_take_the_usual_words(typed: str, stored: bool) -> None:
    assert plan(outgoing(runOnEdits=not stored), A("runOnEdits", typed)) == {"runOnEdits": stored}


def test_a_boolean_that_is_no_boolean_says_what_works() -> None:
    assert "runOnEdits: `maybe` is not true or false" in refusal(outgoing(), A("runOnEdits", "maybe"))


@pytest.mark.parametrize("typed", ["abc", "-1", "1.5", "99999999999"])
def test_retry_count_is_a_whole_number(typed: str) -> None:
    text = refusal(outgoing(), A("retryCount", typed))
    assert text.startswith("retryCount: ")
    assert "whole number" in text


def test_retry_count_zero_is_refused_while_retries_are_on_but_fine_without() -> None:
    assert "at least 1 while retryFailedCalls is on" in refusal(outgoing(), A("retryCount", "0"))
    assert plan(outgoing(retryFailedCalls=False), A("retryCount", "0")) == {"retryCount": 0}


def test_retry_delay_is_one_of_the_three_the_server_knows_in_lower_case() -> None:
    assert plan(outgoing(), A("retryDelay", "Powers-Of-Two")) == {"retryDelay": "powers-of-two"}
    text = refusal(outgoing(), A("retryDelay", "weekly"))
    assert all(delay in text for delay in RETRY_DELAYS)


def test_events_are_matched_loosely_and_unknown_ones_list_the_known() -> None:
    assert plan(outgoing(), A("event", "room-joined"), A("triggerWords", ""))["event"] == "roomJoined"
    text = refusal(outgoing(), A("event", "messageEdited"))
    assert all(event in text for event in EVENTS)


def test_a_room_typed_without_its_sign_is_suggested_only_among_the_callers_rooms() -> None:
    """Issue 13: `channel=nowhere` answered "did you mean #nowhere?" for a room that does not
    exist. Only a room of the caller's (`rooms`) is suggested: that very one, else the closest."""
    assert "did you mean" not in refusal(incoming(), A("channel", "nowhere"))
    assert "did you mean" not in refusal(incoming(), A("channel", "nowhere"), rooms=("general", "ops"))
    assert "did you mean `#alerts`?" in refusal(outgoing(), A("targetRoom", "alert"), rooms=("alerts", "ops"))
    both = refusal(incoming(), A("channel", "ops-tem"), rooms=("ops-team", "ops-teams", "general"))
    assert "did you mean `#ops-team` or `#ops-teams`?" in both
    # A room name is shown as code that stays code: a backtick in it cannot end the span.
    assert "did you mean `#alˋerts`?" in refusal(incoming(), A("channel", "alerts"), rooms=("al`erts",))


def test_a_mistyped_field_name_is_guessed_in_backticks_like_every_suggestion() -> None:
    with pytest.raises(Invalid) as caught:
        find_field("retyrCount")
    assert "Did you mean `retryCount`?" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://files.test/x",
        "files.test/hook",
        "https:///no-host",
        "http://[bad-v6/x",
        "https://hooks.test:443x/in",  # a port that is not a number (was accepted)
        "https://hooks.test:99999/in",  # a port out of range (was accepted)
    ],
)
def test_urls_must_be_http_addresses_and_are_not_echoed(url: str) -> None:
    text = refusal(outgoing(), A("urls", url))
    assert "urls: each URL must be an http(s) address" in text
    assert url not in text


def test_channel_entries_start_with_a_sigil_and_scopes_are_outgoing_only() -> None:
    assert "did you mean `#alerts`?" in refusal(incoming(), A("channel", "alerts"), rooms=("alerts", "ops"))
    assert plan(outgoing(), A("channel", "ALL_PUBLIC_CHANNELS")) == {"channel": ["all_public_channels"]}
    assert "is not a channel entry" in refusal(incoming(), A("channel", "all_public_channels"))


def test_emoji_is_a_code_with_colons() -> None:
    assert plan(incoming(), A("emoji", ":tada:")) == {"emoji": ":tada:"}
    assert "e.g. :tada:" in refusal(incoming(), A("emoji", "tada"))
    assert plan(incoming(), A("emoji", "")) == {"emoji": ""}


def test_a_name_cannot_be_emptied_but_alias_can() -> None:
    assert "name: the name can't be empty" in refusal(incoming(), A("name", "  "))
    assert plan(incoming(), A("alias", "")) == {"alias": ""}


def test_a_signed_value_of_a_one_value_field_is_the_value_as_typed() -> None:
    assert plan(incoming(), A("alias", "bot", op="remove")) == {"alias": "-bot"}
    assert "`-1` is not a whole number" in refusal(outgoing(), A("retryCount", "1", op="remove"))


def test_a_field_given_twice_is_refused() -> None:
    assert "alias: is given twice" in refusal(incoming(), A("alias", "a"), A("alias", "b"))


def test_a_token_is_never_echoed_even_when_refused() -> None:
    text = refusal(outgoing(), A("token", "two words"))
    assert "two words" not in text
    assert text.startswith("token: ")


# --- lists ---------------------------------------------------------------------------------------------


def test_list_fields_split_and_add_and_remove_without_retyping() -> None:
    doc = outgoing()
    assert plan(doc, A("triggerWords", "!ship", "add"), A("triggerWords", "!build", "remove")) == {
        "triggerWords": ["!deploy", "!ship"]
    }
    assert plan(doc, A("channel", "#alerts,#ops #ops")) == {"channel": ["#alerts", "#ops"]}
    assert plan(doc, A("triggerWords", "deploy now, ship it")) == {"triggerWords": ["deploy now", "ship it"]}


def test_removing_what_is_not_there_says_what_is() -> None:
    text = refusal(outgoing(), A("triggerWords", "!nope", "remove"))
    assert "`!nope` is not in the list" in text
    assert "!deploy, !build" in text


def test_removing_a_url_that_is_not_there_does_not_reveal_the_stored_ones() -> None:
    text = refusal(outgoing(), A("urls", "https://other.example.org/x", "remove"))
    assert "secret=1" not in text
    assert "deploy.example.org" in text


def test_the_last_url_and_the_last_incoming_channel_cannot_be_removed() -> None:
    assert "at least one URL" in refusal(outgoing(), A("urls", "https://deploy.example.org/hook?secret=1", "remove"))
    assert "at least one #room or @user" in refusal(incoming(), A("channel", "#general", "remove"))


def test_adding_what_is_there_changes_nothing() -> None:
    assert plan_changes(outgoing(), [A("triggerWords", "!deploy", "add")]).empty


# --- rules across fields -------------------------------------------------------------------------------


def test_fields_of_the_other_type_are_refused() -> None:
    assert "urls: only outgoing webhooks have it" in refusal(incoming(), A("urls", "https://x.org"))
    assert "only incoming webhooks have it" in refusal(outgoing(), A("overrideDestinationChannelEnabled", "on"))


def test_a_channel_less_event_drops_channels_and_trigger_words_as_the_server_would() -> None:
    planned = plan_changes(outgoing(), [A("event", "roomCreated")])
    by_key = {c.key: c for c in planned.changes}
    assert by_key["event"].after == "roomCreated" and by_key["event"].because is None
    assert by_key["channel"].after == [] and "uses no channels" in str(by_key["channel"].because)
    assert by_key["triggerWords"].after is None
    assert "does not use channels" in refusal(outgoing(), A("event", "roomCreated"), A("channel", "#ops"))


def test_user_created_needs_a_target_room() -> None:
    assert "targetRoom: the userCreated event needs a target room" in refusal(outgoing(), A("event", "userCreated"))
    updates = plan(outgoing(), A("event", "userCreated"), A("targetRoom", "#general"))
    assert updates["targetRoom"] == "#general"


def test_a_channel_event_needs_channels() -> None:
    doc = outgoing(event="roomCreated", channel=[], triggerWords=None)
    assert "the roomJoined event needs at least one" in refusal(doc, A("event", "roomJoined"))
    assert plan(doc, A("event", "roomJoined"), A("channel", "#ops")) == {"event": "roomJoined", "channel": ["#ops"]}


def test_trigger_words_only_for_send_message() -> None:
    doc = outgoing(event="roomJoined", triggerWords=None)
    assert "only the sendMessage event uses trigger words" in refusal(doc, A("triggerWords", "!x"))


def test_switching_retries_on_fills_the_server_defaults() -> None:
    doc = outgoing(retryFailedCalls=False, retryCount=None, retryDelay=None)
    assert plan(doc, A("retryFailedCalls", "on")) == {
        "retryFailedCalls": True,
        "retryCount": 4,
        "retryDelay": "powers-of-ten",
    }


def test_an_outgoing_webhook_without_token_can_get_one() -> None:
    doc = outgoing(token=None)
    assert "token: it has no token" in refusal(doc, A("alias", "x"))
    assert plan(doc, A("token", "fresh-token")) == {"token": "fresh-token"}


def test_every_problem_is_reported_at_once() -> None:
    text = refusal(outgoing(), A("retryCount", "x"), A("event", "nope"), A("foo", "bar"))
    assert text.startswith("I changed nothing:")
    assert text.count("\n• ") == 3


def test_unchanged_values_make_an_empty_plan() -> None:
    assert plan_changes(incoming(), [A("alias", "guggy"), A("scriptEnabled", "no")]).empty


def test_references_are_what_must_exist_new_entries_only() -> None:
    planned = plan_changes(
        outgoing(), [A("channel", "#ops", "add"), A("username", "@hookbot"), A("targetRoom", "@alice")]
    )
    refs = {(r.key, r.entry, r.kind) for r in planned.references}
    assert refs == {
        ("channel", "#ops", "channel"),
        ("username", "hookbot", "poster"),
        ("targetRoom", "@alice", "channel"),
    }


def test_a_changed_post_as_user_of_an_incoming_webhook_comes_with_the_bot_role_note() -> None:
    notes = plan_changes(incoming(), [A("username", "hookbot")]).notes
    assert any("bot role" in note for note in notes)


def test_with_value_replaces_or_drops_a_change() -> None:
    planned = plan_changes(incoming(), [A("username", "Rocket.Cat"), A("alias", "x")])
    assert planned.with_value("username", "ROCKET.CAT").updates == {"username": "ROCKET.CAT", "alias": "x"}
    assert planned.with_value("username", "rocket.cat").updates == {"alias": "x"}


def test_plan_reprs_never_show_a_token() -> None:
    planned = plan_changes(outgoing(), [A("token", "brand-new-secret")])
    assert "brand-new-secret" not in repr(planned)
    assert planned.changes[0].secret


# --- the body the plan leads to --------------------------------------------------------------------------

BODY_CASES = [
    (incoming(), [A("channel", "#ops,@alice"), A("username", "hookbot"), A("alias", "")]),
    (incoming(), [A("overrideDestinationChannelEnabled", "yes"), A("emoji", ":tada:")]),
    (outgoing(), [A("event", "userCreated"), A("targetRoom", "#general")]),
    (outgoing(), [A("urls", "https://a.example.org,https://b.example.org"), A("retryCount", "3")]),
    (outgoing(retryFailedCalls=False, retryCount=None, retryDelay=None), [A("retryFailedCalls", "true")]),
    (outgoing(), [A("triggerWords", ""), A("triggerWordAnywhere", "on"), A("impersonateUser", "on")]),
]


@pytest.mark.parametrize(("doc", "assignments"), BODY_CASES)
def test_planned_changes_make_a_body_the_official_schema_accepts(doc: dict[str, Any], assignments: list[A]) -> None:
    planned = plan_changes(doc, assignments)
    body = build_update_body(doc, planned.updates)
    errors = list(update_validator().iter_errors(body))
    assert not errors, errors[0].message
    for key, value in planned.updates.items():
        if key in body:
            expected = ",".join(value) if key == "channel" else value
            assert body[key] == expected


# --- the README's field table ------------------------------------------------------------------------

README = Path(__file__).resolve().parents[3] / "README.md"


def readme_field_rows() -> dict[str, list[str]]:
    """The field table of the README's `set` section: field -> [also, type, valid values, example]."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Changing fields: `set`", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_the_readme_field_table_is_the_catalogue() -> None:
    rows = readme_field_rows()
    assert list(rows) == [spec.key for spec in FIELDS]
    for spec in FIELDS:
        also, kind, valid, example = rows[spec.key]
        for alias in re.findall(r"`([^`]+)`", also):
            assert find_field(alias).key == spec.key, alias
        assert kind == {frozenset({INCOMING}): "incoming", frozenset({OUTGOING}): "outgoing"}.get(spec.kinds, "both")
        assert valid == spec.valid, spec.key
        assert example == f"`{spec.example}`", spec.key


def test_the_readme_examples_are_accepted() -> None:
    from commands.args import parse_assignments
    from commands.parser import tokenize

    text = README.read_text(encoding="utf-8").split("## Changing fields: `set`", 1)[1].split("\n## ", 1)[0]
    examples = re.findall(r"^\| `(\w+)` .*\| `([^`]+)` \|$", text, flags=re.MULTILINE)
    assert len(examples) == len(FIELDS)
    for key, example in examples:
        # Values unlike the examples', so each example is a change.
        doc = (
            incoming()
            if find_field(key).kinds == {INCOMING}
            else outgoing(username="hookbot", scriptEnabled=True, triggerWords=["!x"], retryFailedCalls=False)
        )
        planned = plan_changes(doc, parse_assignments(tokenize(example)))
        assert key in planned.updates, example
