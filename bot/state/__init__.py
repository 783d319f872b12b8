"""Durable state in one SQLite file (`store`): claims of handled commands, room cursors, write
intents, the audit trail, the message-id key; timed disables (`timer_store`) and their lifecycle
(`timer_states`); one running bot per file (`owner`).

Storage only: no Rocket.Chat calls. May import: `bot.integrations` (for values), `bot.rocketchat`
(for values and message ids) and the foundation modules of `bot`.
"""
