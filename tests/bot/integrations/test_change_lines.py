"""How a change reads in chat: only what changes, secrets and webhook addresses never in full."""

from __future__ import annotations

import re

from bot.integrations.change_lines import change_line, change_lines, changes_between
from bot.integrations.fields import Change
from bot.text import ZWSP, verbatim


def test_a_token_shows_only_whether_it_was_set() -> None:
    assert change_line(Change("token", "old-secret", "new-secret")) == "token: set → changed (not shown)"
    assert change_line(Change("token", None, "new-secret")) == "token: none → set (not shown)"


def test_webhook_addresses_and_avatars_show_only_their_host() -> None:
    line = change_line(Change("urls", ["https://a.example.org/hooks/abc?token=1"], ["https://b.example.org/x/y"]))
    assert line == "urls: `https://a.example.org/…` → `https://b.example.org/…`"
    assert "token=1" not in line
    assert "abc" not in change_line(Change("avatar", "https://img.example.org/abc.png", ""))


def test_values_lists_booleans_and_nothing_read_naturally() -> None:
    shown = change_lines([Change("channel", ["#general"], ["#ops", "@alice"])])
    assert shown == "• channel: `#general` → `#ops`, `@alice`"
    assert change_line(Change("runOnEdits", None, True)) == "runOnEdits: (none) → `true`"
    assert change_line(Change("alias", "bot", "")) == "alias: `bot` → (none)"


def test_a_consequence_says_why() -> None:
    line = change_line(Change("channel", ["#ops"], [], "the roomCreated event uses no channels"))
    assert line.endswith("(the roomCreated event uses no channels)")


def test_echoed_values_cannot_mention_anyone() -> None:
    text = change_lines([Change("alias", "bot", "@all hi @here"), Change("channel", [], ["@alice", "#ops"])])
    # Rocket.Chat reads a mention after the start, whitespace or `>` (contract §5.4).
    assert not re.search(rf"(^|[\s>])[@#](?!{ZWSP})", text), text


def test_changes_between_follows_the_catalogue_order() -> None:
    changes = changes_between({"alias": "a", "name": "n"}, {"emoji": ":x:", "alias": "b", "name": "m"})
    assert [c.key for c in changes] == ["name", "alias", "emoji"]
    assert changes[1].before == "a"


def test_values_keep_every_character_as_show_prints_them() -> None:
    """Was: a backtick became a look-alike and `@all` after a space got a zero-width space inside
    the code span; now a preview shows a value the way `show` does (`text.verbatim`)."""
    line = change_line(Change("alias", "a`b", "ping @all"))
    assert line == "alias: `a`\\``b` → `ping ``@all`"
    assert ZWSP not in line


def test_a_preview_keeps_the_spacing_and_characters_show_prints() -> None:
    """Was: the preview (and the applied change, and undo) went through `bullet_list`, whose
    `single_line` collapsed two spaces into one and dropped invisible characters such as a word
    joiner inside the code spans: the preview showed `Guggy bot` for a stored or typed
    `Guggy  bot`, so what was confirmed (and copied back) was not what would be written."""
    value = "Guggy  bot\u2060!"
    shown = change_lines([Change("alias", "a  b", value), Change("channel", ["#ops"], ["#ops", "#alerts"])])
    assert shown == f"• alias: {verbatim('a  b')} → {verbatim(value)}\n• channel: `#ops` → `#ops`, `#alerts`"
