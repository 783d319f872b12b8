"""How the demo chat shows messages, rooms and integrations in a terminal."""

from __future__ import annotations

from typing import Any

from bot.demo.render import RoomRef, integrations_table, message_signature, prompt, render_message

GENERAL = RoomRef("GENERAL", "general", "c")
DM = RoomRef("abcdef", "integrations-bot", "d", peer="integrations-bot")


def message(text: str, username: str = "integrations-bot", **extra: Any) -> dict[str, Any]:
    return {"_id": "m1", "rid": "GENERAL", "msg": text, "u": {"_id": "u1", "username": username}, **extra}


def test_a_message_is_led_by_its_room_and_author() -> None:
    assert render_message(message("Guggy is disabled."), GENERAL) == ["[#general] integrations-bot: Guggy is disabled."]
    assert render_message(message("hi", "alice"), DM) == ["[@integrations-bot] alice: hi"]


def test_thread_replies_are_marked_and_continuation_lines_indented() -> None:
    lines = render_message(message("Commands:\n  list\n  show NAME", tmid="root"), GENERAL)
    assert lines[0] == "[#general] ↳ integrations-bot: Commands:"
    indent = " " * (len("[#general] ↳ ") + 2)
    assert lines[1:] == [f"{indent}  list", f"{indent}  show NAME"]


def test_edits_are_marked() -> None:
    assert render_message(message("done"), GENERAL, "edited") == ["[#general] integrations-bot: done (edited)"]


def test_attachments_fields_and_buttons_say_what_to_type() -> None:
    attachments = [
        {
            "title": "Guggy (outgoing)",
            "text": "enabled",
            "fields": [{"title": "channel", "value": "#general"}],
            "actions": [
                {"type": "button", "text": "Disable", "msg": "!integration disable Guggy", "msg_in_chat_window": True}
            ],
        }
    ]
    lines = render_message(message("Found one:", attachments=attachments), GENERAL)
    assert lines[0] == "[#general] integrations-bot: Found one:"
    indent = " " * len("[#general] ") + "  "
    assert lines[1:] == [
        f"{indent}│ Guggy (outgoing)",
        f"{indent}│ enabled",
        f"{indent}│ channel: #general",
        f"{indent}│ [Disable] → type: !integration disable Guggy",
    ]


def test_webhook_posts_show_their_alias_and_system_messages_their_type() -> None:
    posted = message("a gif", "rocket.cat", bot={"i": "x"}, alias="guggy")
    assert render_message(posted, GENERAL) == ["[#general] guggy (integration): a gif"]
    joined = message("", "owen", t="uj")
    assert render_message(joined, GENERAL) == ["[#general] * owen (uj)"]


def test_reactions_are_listed_under_the_message() -> None:
    reacted = message(
        "!integration disable Guggy", "alice", reactions={":white_check_mark:": {"usernames": ["integrations-bot"]}}
    )
    assert render_message(reacted, GENERAL, "updated")[-1].endswith("reactions: :white_check_mark: integrations-bot")


def test_the_signature_ignores_thread_counters_but_not_edits_or_reactions() -> None:
    base = message("hello")
    assert message_signature(base) == message_signature({**base, "tcount": 3, "tlm": "2024-01-01T00:00:00.000Z"})
    assert message_signature(base) != message_signature({**base, "msg": "hello!", "editedAt": "x"})
    assert message_signature(base) != message_signature({**base, "reactions": {":+1:": {"usernames": ["a"]}}})


def test_integrations_table_lists_name_type_enabled_and_id_sorted_by_name() -> None:
    lines = integrations_table(
        [
            {"_id": "i2", "name": "Guggy", "type": "webhook-outgoing", "enabled": False},
            {"_id": "i1", "name": "Alertmanager", "type": "webhook-incoming", "enabled": True},
        ]
    )
    assert [line.split() for line in lines] == [
        ["name", "type", "enabled", "id"],
        ["Alertmanager", "incoming", "yes", "i1"],
        ["Guggy", "outgoing", "no", "i2"],
    ]
    assert integrations_table([]) == ["  (no integrations)"]


def test_the_prompt_says_who_and_where() -> None:
    assert prompt("alice", GENERAL, in_thread=False) == "alice [#general]> "
    assert prompt("admin", DM, in_thread=True) == "admin [@integrations-bot ↳ thread]> "
