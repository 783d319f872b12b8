"""Rocket.Chat's trash collections for the sandbox: what was deleted, and when.

Rocket.Chat keeps deleted messages and subscriptions in a `trash` collection and answers
"what was deleted since X" (`chat.syncMessages`, `subscriptions.get?updatedSince`) from it. The
store deletes for good, so `Trash` listens to the store's events and remembers each deletion
with the store clock's time. Only deletions after the listener is attached are known.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sandbox.store import DeleteMessageEvent, Event, Store, SubscriptionEvent


@dataclass(frozen=True)
class Deleted:
    _id: str
    scope: str  # the room id of a message, the user id of a subscription
    deleted_at: datetime

    def document(self) -> dict[str, Any]:
        """The trash projection `{_id, _deletedAt}` the REST answers carry."""
        return {"_id": self._id, "_deletedAt": self.deleted_at}


class Trash:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._messages: list[Deleted] = []
        self._subscriptions: list[Deleted] = []
        store.add_listener(self._on_event)

    def _on_event(self, event: Event) -> None:
        # Runs under the store lock: cheap appends only.
        if isinstance(event, DeleteMessageEvent):
            with self._lock:
                self._messages.append(Deleted(event.message_id, event.room_id, self._store.clock()))
        elif isinstance(event, SubscriptionEvent) and event.action == "removed":
            with self._lock:
                self._subscriptions.append(Deleted(event.subscription["_id"], event.user_id, self._store.clock()))

    def deleted_messages(self, room_id: str) -> list[Deleted]:
        with self._lock:
            return [d for d in self._messages if d.scope == room_id]

    def removed_subscriptions(self, user_id: str, since: datetime) -> list[Deleted]:
        with self._lock:
            return [d for d in self._subscriptions if d.scope == user_id and d.deleted_at > since]
