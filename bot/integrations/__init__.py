"""The integrations domain: the caller's rights as Rocket.Chat evaluates them (`authz`), finding an
integration by name and changing it without losing a field (`service`, `locks`, `documents`), the
fields people may change (`fields`, `fieldcheck`), rooms by id (`room_names`), "did you mean"
(`similar`), how an integration's type and state read (`wording`), and how a change of fields
reads (`change_lines`: `set`'s preview, `undo`, a timed re-enable's notice), and which calls of an
outgoing webhook failed, told without its secrets (`call_failures`, for `failing`).

May import: `bot.rocketchat` and the foundation modules of `bot`.
"""
