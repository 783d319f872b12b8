"""Rocket.Chat's default roles and role -> permission table (contract §3.1).

Only defaults: a real server applies them at first install and admins change them later, which
the sandbox reproduces through `Store.set_permission_roles` / `Store.set_user_roles`.
The table covers every permission the bot and the sandbox evaluate, plus the `bot` role's full
default set so that a bot account without extra roles behaves like on a real server.
"""

from __future__ import annotations

from typing import Final

# role id -> (scope, description, protected)
DEFAULT_ROLES: Final[dict[str, tuple[str, str, bool]]] = {
    "admin": ("Users", "Admin", True),
    "moderator": ("Subscriptions", "Moderator", True),
    "leader": ("Subscriptions", "Leader", True),
    "owner": ("Subscriptions", "Owner", True),
    "user": ("Users", "", True),
    "bot": ("Users", "", True),
    "app": ("Users", "", True),
    "guest": ("Users", "", True),
    "anonymous": ("Users", "", True),
    "livechat-agent": ("Users", "Livechat Agent", True),
    "livechat-manager": ("Users", "Livechat Manager", True),
}

DEFAULT_PERMISSIONS: Final[dict[str, tuple[str, ...]]] = {
    # integrations (contract §3.1): admin only by default
    "manage-incoming-integrations": ("admin",),
    "manage-own-incoming-integrations": ("admin",),
    "manage-outgoing-integrations": ("admin",),
    "manage-own-outgoing-integrations": ("admin",),
    # what the bot needs besides the integration rights
    "view-full-other-user-info": ("admin",),
    "api-bypass-rate-limit": ("admin", "bot", "app"),
    "create-personal-access-tokens": ("admin", "user"),
    "access-permissions": ("admin",),
    "view-other-user-channels": ("admin",),
    "message-impersonate": ("bot", "app"),
    "send-many-messages": ("admin", "bot", "app"),
    # rooms and messages
    "view-c-room": ("admin", "user", "bot", "app", "anonymous"),
    "view-d-room": ("admin", "user", "bot", "app", "guest"),
    "view-p-room": ("admin", "user", "anonymous", "guest"),
    "view-joined-room": ("guest", "bot", "app", "anonymous"),
    "preview-c-room": ("admin", "user", "anonymous"),
    "create-c": ("admin", "user", "bot", "app"),
    "create-d": ("admin", "user", "bot", "app", "livechat-agent"),
    "create-p": ("admin", "user", "bot", "app"),
    "join-without-join-code": ("admin", "bot", "app"),
    "leave-c": ("admin", "user", "bot", "anonymous", "app"),
    "leave-p": ("admin", "user", "bot", "anonymous", "app"),
    "bypass-time-limit-edit-and-delete": ("bot", "app"),
    "edit-message": ("admin", "owner", "moderator"),
    "delete-message": ("admin", "owner", "moderator"),
    "mention-all": ("admin", "owner", "moderator", "user"),
    "mention-here": ("admin", "owner", "moderator", "user"),
    "post-readonly": ("admin", "owner", "moderator"),
    "view-room-administration": ("admin",),
    "view-user-administration": ("admin",),
    "edit-other-user-info": ("admin",),
    "view-logs": ("admin",),
}

# The `bot` role's default permissions, for tests that want to assert the table (contract §3.1).
BOT_ROLE_DEFAULTS: Final[frozenset[str]] = frozenset(
    {
        "api-bypass-rate-limit",
        "create-c",
        "create-d",
        "create-p",
        "join-without-join-code",
        "leave-c",
        "leave-p",
        "send-many-messages",
        "view-c-room",
        "view-d-room",
        "view-joined-room",
        "message-impersonate",
        "bypass-time-limit-edit-and-delete",
    }
)

INTEGRATION_PERMISSIONS: Final[tuple[str, ...]] = (
    "manage-incoming-integrations",
    "manage-own-incoming-integrations",
    "manage-outgoing-integrations",
    "manage-own-outgoing-integrations",
)
