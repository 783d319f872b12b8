"""`undo` through the real command layer: what it says it restored reads like `set`'s preview."""

from __future__ import annotations

from set_harness import Harness


def bullets(text: str) -> list[str]:
    return [line[2:] for line in text.splitlines() if line.startswith("• ")]


async def test_undo_shows_values_like_set_does(h: Harness) -> None:
    """Was: `undo` listed JSON (`"alias"`: `null` → `"Guggy bot"`, `["#ops"]`); now the values
    read as in `set`'s preview: `(none)` for an empty one, list entries each in a code span."""
    made = h.control.create_incoming_integration("Undo probe", channel="#general", emoji=":ghost:")
    changed = await h.say(
        "admin", "ops", f'!integration set {made["_id"]} alias="Probe bot" channel=#general,#ops --yes'
    )
    assert changed.outcome == "changed", changed.text
    undone = await h.say("admin", "ops", "!integration undo")
    assert undone.outcome == "changed", undone.text
    # In the catalogue's order, as `set` lists them (skipTranspile: the 8.x update wrote it, undo restores it).
    assert bullets(undone.text)[:2] == ["channel: `#general`, `#ops` → `#general`", "alias: `Probe bot` → (none)"]
    assert not any('"' in line or "[" in line for line in bullets(undone.text)), undone.text
    doc = h.doc(made["_id"])
    assert not doc.get("alias") and doc["channel"] == ["#general"]


async def test_undo_of_a_token_change_never_shows_it(h: Harness) -> None:
    made = h.control.create_outgoing_integration(
        "Undo token probe", channel="#general", urls=["https://example.org/hook"], token="old-token-abc"
    )
    await h.say("admin", "ops", f"!integration set {made['_id']} token=new-token-xyz --yes")
    undone = await h.say("admin", "ops", "!integration undo")
    assert bullets(undone.text) == ["token: set → changed (not shown)"]
    assert "token-" not in undone.text


async def test_undo_refused_because_the_script_changed_never_shows_the_script(h: Harness) -> None:
    """Was (since undo writes its lists as `set` does): when someone edited the integration's script
    after the caller's change, undo's refusal listed "what differs" with the whole script in a code
    span, posted in the room the caller typed in; a script often holds an API key. `show` shows a
    script by presence only; so does undo now, and `set`'s lines for any field no command sets."""
    made = h.control.create_incoming_integration("Undo script probe", channel="#general")
    await h.say("admin", "ops", f"!integration set {made['_id']} alias=probe --yes")
    h.control.update_integration(
        made["_id"], {"script": "const KEY = 'sk-live-4242';\nclass Script {}", "scriptEnabled": True}
    )
    refused = await h.say("admin", "ops", "!integration undo")
    assert refused.outcome == "conflict", refused.text
    assert "sk-live" not in refused.text and "Script" not in refused.text, refused.text
    assert "• script: none → set (not shown)" in refused.text.splitlines(), refused.text
