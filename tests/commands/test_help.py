"""`help [command]`: what the caller may run, the real name rule, and what a refused command needs."""

from __future__ import annotations

from datetime import timedelta

from set_harness import Harness


async def test_help_disable_states_the_name_rule_the_parser_applies(h: Harness) -> None:
    """Was: "the first word is the name and the rest is the reason", while the name that exists
    wins (commands/targets.py `resolve_reading`); now help says what really happens."""
    text = (await h.say("admin", "general", "!integration help disable")).text
    assert "first word is the name" not in text
    assert "When two runs name different integrations" in text
    assert "`disable Jenkins builds failing since noon`" in text  # the seed's name with a space
    assert "quotes" in text and "`for`, `because` or `--`" in text


async def test_the_name_rule_help_describes_is_the_one_applied(h: Harness) -> None:
    short = h.control.create_incoming_integration("Noisy", channel="#general")
    long = h.control.create_incoming_integration("Noisy hook", channel="#general")
    asked = await h.say("admin", "general", "!integration disable Noisy hook flapping since noon")
    assert asked.outcome == "ambiguous", asked.text
    assert short["_id"] in asked.text and long["_id"] in asked.text
    assert h.doc(long["_id"])["enabled"] is True and h.doc(short["_id"])["enabled"] is True
    reply = await h.say("admin", "general", '!integration disable "Noisy hook" flapping since noon')
    assert reply.outcome == "changed", reply.text
    assert h.doc(long["_id"])["enabled"] is False and h.doc(short["_id"])["enabled"] is True
    assert "Reason: flapping since noon" in reply.text
    quoted = await h.say("admin", "general", '!integration disable "Noisy" hook is flapping')
    assert quoted.outcome == "changed", quoted.text
    assert h.doc(short["_id"])["enabled"] is False
    assert "Reason: hook is flapping" in quoted.text


async def test_help_for_a_command_the_caller_may_not_run_names_the_permission(h: Harness) -> None:
    """Was: alice (no integration permission) got "There is no command `disable` for you"; now
    she learns what it does and which permission it needs."""
    reply = await h.say("alice", "general", "!integration help disable")
    assert "There is no command" not in reply.text
    assert reply.text.startswith("`disable [incoming|outgoing]")
    assert (
        "⛔ You can't run `disable`: it needs one of `manage-incoming-integrations`, "
        "`manage-own-incoming-integrations`, `manage-outgoing-integrations`, `manage-own-outgoing-integrations`."
    ) in reply.text
    assert reply.outcome == "denied"


async def test_help_for_an_unknown_command_still_says_so(h: Harness) -> None:
    reply = await h.say("alice", "general", "!integration help frobnicate")
    assert reply.text.startswith("There is no command `frobnicate`")


async def test_help_enable_and_show_say_a_name_with_spaces_needs_no_quotes_and_it_does_not(h: Harness) -> None:
    """Was: "put a name with spaces in double quotes" in `help enable`/`help show`, while the
    unquoted name works (the review of issue 13 item 5 left it)."""
    for command in ("enable", "show"):
        text = (await h.say("admin", "general", f"!integration help {command}")).text
        assert "needs no quotes" in text and "put a name with spaces in double quotes" not in text, text
    shown = await h.say("admin", "ops", "!integration show Jenkins builds")
    assert "`Jenkins builds` · incoming webhook" in shown.text, shown.text


async def test_help_disable_names_this_servers_longest_timed_disable(h: Harness) -> None:
    """Was: "at most 7 d" whatever BOT_MAX_DISABLE said; `disable … for` then refused what help offered."""
    text = (await h.say("admin", "general", "!integration help disable")).text
    assert "at most 7 d)" in text and "{max_disable}" not in text, text  # the default
    h.services.settings = h.services.settings.model_copy(update={"bot_max_disable": timedelta(hours=12)})
    text = (await h.say("admin", "general", "!integration help disable")).text
    assert "at most 12 h)" in text, text
    refused = await h.say("admin", "general", "!integration disable Grafana for 1d")
    assert refused.outcome == "usage" and "12 h" in refused.text, refused.text
