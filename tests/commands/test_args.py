"""Argument converters: the command forms responders type, and the errors they see otherwise."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.errors import UsageError
from commands.args import (
    HELP,
    Assignment,
    ListFilter,
    Target,
    parse_assignments,
    parse_code,
    parse_disable_args,
    parse_duration,
    parse_extend_args,
    parse_help_topic,
    parse_list_filters,
    parse_minutes,
    parse_optional_target,
    parse_set_args,
    parse_target,
)
from commands.parser import Token, extract_invocation, tokenize
from tests.bot.test_text import server_mentions


def args(text: str) -> list[Token]:
    return tokenize(text)


def command_args(text: str) -> tuple[str, tuple[Token, ...]]:
    invocation = extract_invocation(text, bot_username="integrations-bot")
    assert invocation is not None
    return invocation.command, invocation.args


# --- targets ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "kind", "query"),
    [
        ("Guggy", None, "Guggy"),
        ("incoming Guggy", "incoming", "Guggy"),
        ("Outgoing Guggy", "outgoing", "Guggy"),
        ("in Guggy", "incoming", "Guggy"),
        ("out Guggy", "outgoing", "Guggy"),
        ("webhook-incoming Guggy", "incoming", "Guggy"),
        ("webhook-outgoing Guggy", "outgoing", "Guggy"),
        ('"Noisy hook"', None, "Noisy hook"),
        ("Noisy hook", None, "Noisy hook"),
        ('outgoing "incoming"', "outgoing", "incoming"),
        ("incoming", None, "incoming"),
        ("665f1c2e9b1e8a0012345678", None, "665f1c2e9b1e8a0012345678"),
    ],
)
def test_parse_target(typed: str, kind: str | None, query: str) -> None:
    target = parse_target(args(typed), command="enable")
    assert (target.kind, target.query, target.rest) == (kind, query, ())


def test_target_stops_at_the_commands_stop_words_and_quoted_words() -> None:
    target = parse_target(args("Noisy hook FOR 30m"), command="disable", stop_words={"for"})
    assert target.query == "Noisy hook"
    assert [t.value for t in target.rest] == ["FOR", "30m"]
    quoted_for = parse_target(args('Noisy "for" x'), command="disable", stop_words={"for"})
    assert quoted_for.query == "Noisy"
    assert [t.value for t in quoted_for.rest] == ["for", "x"]


def test_a_kind_word_before_a_stop_word_is_the_name() -> None:
    target = parse_target(args("incoming for 30m"), command="disable", stop_words={"for"})
    assert (target.kind, target.query) == (None, "incoming")


@pytest.mark.parametrize("typed", ["", "for 30m", "FOR 30m"])
def test_missing_name_shows_the_usage_line(typed: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_target(args(typed), command="show", stop_words={"for"})
    assert caught.value.command == "show"
    assert "show [incoming|outgoing] <name|id>" in caught.value.problem


def test_empty_quoted_name() -> None:
    with pytest.raises(UsageError, match="empty"):
        parse_target(args('""'), command="show")


def test_missing_name_uses_the_callers_usage_line() -> None:
    with pytest.raises(UsageError, match="use it like this"):
        parse_target([], command="show", usage="use it like this")


def test_optional_target() -> None:
    assert parse_optional_target([], command="history") is None
    assert parse_optional_target(args("Guggy"), command="history") == Target(None, "Guggy", (), ("Guggy",))


# --- list ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("", ListFilter()),
        ("incoming", ListFilter(kind="incoming")),
        ("disabled outgoing", ListFilter(kind="outgoing", enabled=False)),
        ("Enabled alerts prod", ListFilter(enabled=True, text="alerts prod")),
        ("alerts in off", ListFilter(kind="incoming", enabled=False, text="alerts")),
        ('"incoming"', ListFilter(text="incoming")),
        ("all", ListFilter()),
    ],
)
def test_list_filters_in_any_order(typed: str, expected: ListFilter) -> None:
    assert parse_list_filters(args(typed)) == expected


@pytest.mark.parametrize("typed", ["incoming outgoing", "enabled disabled"])
def test_contradicting_list_filters(typed: str) -> None:
    with pytest.raises(UsageError, match="not both"):
        parse_list_filters(args(typed))


# --- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("1h30", timedelta(hours=1, minutes=30)),
        ("1d", timedelta(days=1)),
        ("90s", timedelta(seconds=90)),
        ("1w", timedelta(weeks=1)),
        ("45 min", timedelta(minutes=45)),
        ("2 hours", timedelta(hours=2)),
        ("2 Hours", timedelta(hours=2)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("1,5h", timedelta(hours=1, minutes=30)),
        (".5h", timedelta(minutes=30)),
        ("an hour", timedelta(hours=1)),
        ("a day", timedelta(days=1)),
        ("half an hour", timedelta(minutes=30)),
        ("an hour and a half", timedelta(minutes=90)),
        ("two hours", timedelta(hours=2)),
        ("1 hour and 30 minutes", timedelta(minutes=90)),
        ("2 hours, 15 mins", timedelta(minutes=135)),
        ("10 secs", timedelta(seconds=10)),
        ("30m.", timedelta(minutes=30)),
        ("7d", timedelta(days=7)),
    ],
)
def test_duration_table(typed: str, expected: timedelta) -> None:
    assert parse_duration(typed) == expected


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("", "how long"),
        ("banana", "not a duration"),
        ("30", "add a unit"),
        ("0m", "more than zero"),
        ("0 hours", "more than zero"),
        ("-5m", "positive"),
        ("—5m", "positive"),
        ("8d", "longest allowed is 7 d"),
        ("2w", "longest allowed is 7 d"),
        ("99999999999999999999999999d", "longest allowed is 7 d"),
        ("3 months", "months"),
        ("30x", "not a duration"),
        ("h", "not a duration"),
        ("1h30m banana", "not a duration"),
        ("0.1s", "shortest allowed"),
    ],
)
def test_bad_durations_say_what_works(typed: str, says: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_duration(typed, command="disable")
    assert says in caught.value.problem
    assert caught.value.command == "disable"


def test_the_maximum_is_the_callers() -> None:
    assert parse_duration("10d", maximum=timedelta(days=30)) == timedelta(days=10)
    with pytest.raises(UsageError, match="longest allowed is 2 h"):
        parse_duration("3h", maximum=timedelta(hours=2))


def test_garbage_is_echoed_mention_safe() -> None:
    with pytest.raises(UsageError) as caught:
        parse_duration("@all")
    assert "`@all`" in caught.value.problem  # right after a backtick: not a mention (contract §5.4)
    assert server_mentions(caught.value.problem) == []


# --- disable ------------------------------------------------------------------------------------


def test_disable_with_quoted_name_duration_and_reason() -> None:
    command, tokens = command_args('/integration disable "Noisy hook" for 30m because flapping')
    assert command == "disable"
    parsed = parse_disable_args(tokens)
    assert parsed.target.query == "Noisy hook"
    assert parsed.duration == timedelta(minutes=30)
    assert parsed.reason == "flapping"
    assert parsed.alternatives == ()


def test_disable_with_double_dash_reason() -> None:
    parsed = parse_disable_args(args("Guggy -- spam"))
    assert (parsed.target.query, parsed.duration, parsed.reason) == ("Guggy", None, "spam")
    # A phone turns `--` into an em dash, sometimes glued to the reason.
    _, tokens = command_args("/integration disable Guggy —spam in #general")
    assert parse_disable_args(tokens).reason == "spam in #general"


def test_disable_with_bare_reason_takes_the_first_word_as_the_name() -> None:
    parsed = parse_disable_args(args("Guggy spamming the channel"))
    assert (parsed.target.query, parsed.reason) == ("Guggy", "spamming the channel")
    # The other readings, longest name first, for a resolver that finds no "Guggy".
    assert parsed.alternatives == (
        ("Guggy spamming the channel", None),
        ("Guggy spamming the", "channel"),
        ("Guggy spamming", "the channel"),
    )


def test_disable_with_unquoted_multi_word_name_before_a_stop_word() -> None:
    parsed = parse_disable_args(args("incoming Noisy hook for 2 hours and 30 minutes -- flapping badly"))
    assert parsed.target == Target("incoming", "Noisy hook", (), ("Noisy", "hook"))
    assert parsed.duration == timedelta(hours=2, minutes=30)
    assert parsed.reason == "flapping badly"
    assert parsed.alternatives == (("Noisy", "hook flapping badly"),)


@pytest.mark.parametrize(
    ("typed", "duration", "reason"),
    [
        ("Guggy", None, None),
        ("Guggy for an hour", timedelta(hours=1), None),
        ("Guggy for 1h 30m", timedelta(minutes=90), None),
        ("Guggy for 30m spamming", timedelta(minutes=30), "spamming"),
        ("Guggy for 30m because it's spamming", timedelta(minutes=30), "it's spamming"),
        ("Guggy because flapping for 30m", None, "flapping for 30m"),
        ('Guggy -- the "fix" broke it', None, 'the "fix" broke it'),
    ],
)
def test_disable_forms(typed: str, duration: timedelta | None, reason: str | None) -> None:
    parsed = parse_disable_args(args(typed))
    assert (parsed.target.query, parsed.duration, parsed.reason) == ("Guggy", duration, reason)


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("", "which integration"),
        ("for 30m", "which integration"),
        ("Guggy for", "`for` needs a duration"),
        ("Guggy for ever", "not a duration"),
        ("Guggy for 30", "add a unit"),
        ("Guggy for 9d", "longest allowed is 7 d"),
        ("Guggy for 1h for 2h", "one duration"),
        ("Guggy because", "add the reason"),
        ("Alerts for prod", "in quotes"),
    ],
)
def test_disable_errors(typed: str, says: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_disable_args(args(typed))
    assert says in caught.value.problem
    assert caught.value.command == "disable"


def test_disable_help_documents_the_name_rule() -> None:
    # The parser offers every reading; the resolver takes the one that names an integration, and
    # asks when two name different ones (commands/targets.py).
    assert "the run of first words that names an integration" in HELP["disable"].details
    assert "When two runs name different integrations" in HELP["disable"].details
    assert "disable Grafana spamming the channel" in HELP["disable"].examples


# --- extend, noisy, help, confirm ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "query", "duration"),
    [
        ("Guggy 30m", "Guggy", timedelta(minutes=30)),
        ("Noisy hook 1h 30m", "Noisy hook", timedelta(minutes=90)),
        ('"Noisy hook" by 2 hours', "Noisy hook", timedelta(hours=2)),
        ("Guggy for an hour", "Guggy", timedelta(hours=1)),
    ],
)
def test_extend(typed: str, query: str, duration: timedelta) -> None:
    parsed = parse_extend_args(args(typed))
    assert (parsed.target.query, parsed.duration) == (query, duration)


@pytest.mark.parametrize(("typed", "says"), [("", "which integration"), ("Guggy", "how long"), ("30m", "how long")])
def test_extend_errors(typed: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        parse_extend_args(args(typed))


def test_noisy_minutes() -> None:
    assert parse_minutes([]) is None
    assert parse_minutes(args("15")) == timedelta(minutes=15)
    assert parse_minutes(args("15 min")) == timedelta(minutes=15)
    assert parse_minutes(args("2h")) == timedelta(hours=2)
    with pytest.raises(UsageError, match="more than zero"):
        parse_minutes(args("0"))
    with pytest.raises(UsageError, match="longest allowed is 1 d"):
        parse_minutes(args("2000"), maximum=timedelta(days=1))
    with pytest.raises(UsageError, match="not a duration"):
        parse_minutes(args("lots"))


def test_help_topic_and_confirm_code() -> None:
    assert parse_help_topic([]) is None
    assert parse_help_topic(args("Disable")) == "disable"
    assert parse_code(args("k7q2.")) == "k7q2"
    with pytest.raises(UsageError, match="code"):
        parse_code([])
    with pytest.raises(UsageError, match="code"):
        parse_code(args("a b"))


# --- set ----------------------------------------------------------------------------------------


def test_assignment_forms() -> None:
    assert parse_assignments(args('alias=bot channel="#alerts team" triggerWords=+deploy urls=-x')) == [
        Assignment("alias", "set", "bot", "alias"),
        Assignment("channel", "set", "#alerts team", "channel"),
        Assignment("triggerwords", "add", "deploy", "triggerWords"),
        Assignment("urls", "remove", "x", "urls"),
    ]


def test_quoted_plus_or_minus_is_a_literal_value() -> None:
    assert parse_assignments(args('alias="+1" emoji="-x"')) == [
        Assignment("alias", "set", "+1", "alias"),
        Assignment("emoji", "set", "-x", "emoji"),
    ]


def test_quoted_item_added_to_a_list() -> None:
    assert parse_assignments(args('triggerWords=+"deploy now"')) == [
        Assignment("triggerwords", "add", "deploy now", "triggerWords")
    ]


def test_compound_and_spaced_assignment_forms() -> None:
    assert parse_assignments(args("triggerWords+=deploy triggerWords-=build Alias = bot")) == [
        Assignment("triggerwords", "add", "deploy", "triggerWords"),
        Assignment("triggerwords", "remove", "build", "triggerWords"),
        Assignment("alias", "set", "bot", "Alias"),
    ]


def test_empty_value_clears_a_field() -> None:
    assert parse_assignments(args("alias=")) == [Assignment("alias", "set", "", "alias")]


def test_field_value_form() -> None:
    assert parse_assignments(args("Alias Guggy bot")) == [Assignment("alias", "set", "Guggy bot", "Alias")]
    assert parse_assignments(args('alias "Guggy bot"')) == [Assignment("alias", "set", "Guggy bot", "alias")]
    assert parse_assignments(args("triggerWords +deploy -build")) == [
        Assignment("triggerwords", "add", "deploy", "triggerWords"),
        Assignment("triggerwords", "remove", "build", "triggerWords"),
    ]
    # A value that merely starts with a dash among other words is a plain value.
    assert parse_assignments(args("alias -bot- is here")) == [Assignment("alias", "set", "-bot- is here", "alias")]


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("", "what should change"),
        ("alias", "what value for alias"),
        ("alias=bot stray", "expected field=value"),
        ("triggerWords=+", "nothing to add"),
        ("triggerWords+=", "nothing to add"),
        ('"my field" x', "not a field name"),
        ("alias =", "what value for alias"),
    ],
)
def test_assignment_errors(typed: str, says: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_assignments(args(typed))
    assert says in caught.value.problem
    assert caught.value.command == "set"


@pytest.mark.parametrize(
    ("typed", "query", "changes"),
    [
        ("Guggy alias=bot", "Guggy", [("alias", "set", "bot")]),
        ("Noisy hook alias=bot enabled=false", "Noisy hook", [("alias", "set", "bot"), ("enabled", "set", "false")]),
        ("Noisy hook alias = bot", "Noisy hook", [("alias", "set", "bot")]),
        ('"Noisy hook" Alias guggy bot', "Noisy hook", [("alias", "set", "guggy bot")]),
        ("Guggy triggerWords +deploy", "Guggy", [("triggerwords", "add", "deploy")]),
        ('Deploys channel="#alerts"', "Deploys", [("channel", "set", "#alerts")]),
    ],
)
def test_set_args(typed: str, query: str, changes: list[tuple[str, str, str]]) -> None:
    parsed = parse_set_args(args(typed))
    assert parsed.target.query == query
    assert [(a.field, a.op, a.value) for a in parsed.assignments] == changes


def test_set_with_kind_word() -> None:
    parsed = parse_set_args(args("outgoing Guggy alias=bot"))
    assert (parsed.target.kind, parsed.target.query) == ("outgoing", "Guggy")


@pytest.mark.parametrize(("typed", "says"), [("", "which integration"), ("alias=bot", "which integration")])
def test_set_without_a_name(typed: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        parse_set_args(args(typed))


# --- the whole layer, from the message to typed values --------------------------------------------


def test_example_commands_from_a_phone() -> None:
    command, tokens = command_args("@integrations-bot Disable “Noisy hook” for 30 min — flapping.")
    assert command == "disable"
    parsed = parse_disable_args(tokens)
    assert (parsed.target.query, parsed.duration, parsed.reason) == ("Noisy hook", timedelta(minutes=30), "flapping")

    command, tokens = command_args("/integration list\u00a0outgoing Disabled")
    assert (command, parse_list_filters(tokens)) == ("list", ListFilter(kind="outgoing", enabled=False))

    command, tokens = command_args("!integration show ‘Noisy hook’?")
    assert (command, parse_target(tokens, command=command).query) == ("show", "Noisy hook")

    command, tokens = command_args("/integration set “Noisy hook” channel=“#alerts team”")
    assert command == "set"
    assert parse_set_args(tokens).assignments == (Assignment("channel", "set", "#alerts team", "channel"),)

    command, tokens = command_args("/integration help Disable")
    assert (command, parse_help_topic(tokens)) == ("help", "disable")

    for word in ("snoozed", "undo", "yes", "history"):
        assert command_args(f"/integration {word.capitalize()}.") == (word, ())


def test_every_help_entry_has_usage_and_examples() -> None:
    for name, entry in HELP.items():
        assert entry.usage.startswith(name), name
        assert entry.examples, name
