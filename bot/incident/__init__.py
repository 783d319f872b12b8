"""The incident toolkit behind `disable … for`, `snoozed`, `extend`, `noisy` and the audit room:
timed disables and the careful re-enable (`timers`, `scheduler`), what posted the most (`noise`),
one chat line per change (`audit_lines`, `audit_room`), wired once in `toolkit`.

May import: `bot.state`, `bot.integrations`, `bot.rocketchat` and the foundation modules of `bot`;
never `commands` (which uses it) or `bot.runtime`.
"""
