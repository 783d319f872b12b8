"""Undo and the careful re-enable rest on two judgements: "changed since?" and "what restores it?"."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from integration_docs import stored_documents

from bot.integrations.documents import changed_fields, last_touch, restore_changes, saved_again
from bot.integrations.service import intended_document, updatable_fields
from bot.rocketchat.models import copy_document

DOC: dict[str, Any] = {
    "_id": "i1",
    "type": "webhook-incoming",
    "name": "Pager",
    "enabled": False,
    "channel": ["#ops"],
    "alias": "pager",
    "token": "secret-token-123456",
    "script": "class Script {}",
    "scriptEnabled": True,
    "scriptCompiled": "compiled",
    "_updatedAt": "2026-11-24T03:00:00.000Z",
    "_updatedBy": {"_id": "bot", "username": "integrations-bot"},
    "_createdBy": {"_id": "u1", "username": "alice"},
}


def test_server_managed_fields_and_nulls_are_not_changes() -> None:
    later = {**DOC, "_updatedAt": "2026-11-24T03:05:00.000Z", "_updatedBy": {"_id": "x"}, "emoji": None}
    assert changed_fields(DOC, later) == {}
    assert saved_again(DOC, later) is True
    assert saved_again(DOC, {**DOC, "_updatedAt": {"$date": 1795489200000}}) is False  # same moment, EJSON


def test_a_changed_field_is_reported_with_secrets_masked() -> None:
    changed = changed_fields(DOC, {**DOC, "enabled": True, "token": "another-secret-987654"})
    assert set(changed) == {"enabled", "token"}
    assert changed["enabled"] == ("false", "true")
    assert "secret" not in repr(changed["token"])


def test_last_touch_reads_who_and_when() -> None:
    touch = last_touch(DOC)
    assert (touch.user_id, touch.username) == ("bot", "integrations-bot")
    assert touch.at is not None and touch.at.minute == 0
    assert last_touch({}).username is None


def test_restore_sets_absent_fields_back_to_none() -> None:
    now = {**DOC, "enabled": True, "emoji": ":fire:", "alias": "other"}
    assert restore_changes(DOC, now) == {"alias": "pager", "emoji": None, "enabled": False}


edits = st.dictionaries(
    st.sampled_from(["name", "enabled", "alias", "emoji", "avatar", "scriptEnabled", "channel", "triggerWords"]),
    st.one_of(
        st.none(),
        st.booleans(),
        st.text(min_size=1, max_size=8),
        st.lists(st.sampled_from(["#ops", "#dev"]), max_size=2),
    ),
    max_size=5,
)


@given(before=stored_documents(realistic=True, rooms=("ops", "dev"), users=("alice",)), edit=edits)
def test_restoring_any_edit_gives_back_the_document(before: dict[str, Any], edit: dict[str, Any]) -> None:
    allowed = {k: v for k, v in edit.items() if k in updatable_fields(before["type"])}
    edited = intended_document(before, allowed)
    restored = intended_document(edited, restore_changes(before, edited))
    assert changed_fields(before, restored) == {}
    assert all(restored.get(k) == before.get(k) for k in updatable_fields(before["type"]))
    if changed_fields(before, edited):
        assert restore_changes(before, edited)  # a visible change always has something to restore


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@given(stored_documents(), JSON_VALUES)
def test_a_document_copy_is_equal_and_shares_nothing_mutable(doc: dict[str, Any], extra: Any) -> None:
    original = {**doc, "extra": extra, "nested": {"list": [extra, {"x": [1, 2]}]}}
    snapshot = copy.deepcopy(original)
    copied = copy_document(original)
    assert copied == original
    _mutate_everything(copied)
    assert original == snapshot  # changing the copy anywhere left the original as it was


def test_a_document_copy_keeps_values_json_does_not_know() -> None:
    when = datetime(2026, 11, 24, tzinfo=UTC)
    original = {"at": when, "pair": ("a", ["b"])}
    copied = copy_document(original)
    assert copied == {"at": when, "pair": ("a", ["b"])}
    copied["pair"][1].append("c")  # a list inside a tuple is copied too (deepcopy's job)
    assert original["pair"] == ("a", ["b"])


def _mutate_everything(value: Any) -> None:
    if isinstance(value, dict):
        for item in list(value.values()):
            _mutate_everything(item)
        value["__mutated__"] = True
    elif isinstance(value, list):
        for item in value:
            _mutate_everything(item)
        value.append("__mutated__")
