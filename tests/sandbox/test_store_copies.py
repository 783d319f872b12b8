"""What the store hands out is a deep copy (`sandbox.store.copied`): equal to what it stores,
sharing nothing a caller could mutate."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sandbox.control import SandboxControl
from sandbox.store import MessageEvent, RoomChangedEvent, Store, copied

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.datetimes(timezones=st.just(UTC))
)
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6), inner, max_size=4)
        | st.tuples(inner, inner)
        | st.sets(st.integers(), max_size=3)
    ),
    max_leaves=20,
)


def containers(value: Any) -> list[Any]:
    """Every mutable container inside `value`, itself included."""
    found: list[Any] = []
    if isinstance(value, dict | list | set):
        found.append(value)
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) else ()
    for item in items:
        found.extend(containers(item))
    return found


@given(documents)
def test_a_copy_equals_the_original_and_shares_no_mutable_part(doc: Any) -> None:
    twin = copied(doc)
    assert twin == doc == copy.deepcopy(doc)
    originals = {id(c) for c in containers(doc)}
    assert not any(id(c) in originals for c in containers(twin))


def test_what_a_post_returns_and_announces_cannot_change_the_stored_message() -> None:
    store = Store()
    control = SandboxControl(store)
    control.create_user("alice")
    control.create_room("ops", members=["alice"])
    events: list[Any] = []
    store.add_listener(events.append)
    returned = control.post_message("alice", "ops", "hello @alice")
    [message] = [e for e in events if isinstance(e, MessageEvent)]
    [room] = [e for e in events if isinstance(e, RoomChangedEvent)]
    for doc in (returned, message.message, message.room, room.room):
        for part in containers(doc):
            if isinstance(part, dict):
                part["poisoned"] = True
            elif isinstance(part, list):
                part.append("poisoned")
    stored = store.get_message(returned["_id"])
    assert stored is not None and "poisoned" not in str(stored)
    assert "poisoned" not in str(store.find_room("ops"))
    assert isinstance(stored["ts"], datetime)
