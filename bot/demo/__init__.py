"""`integrations-bot demo`: the seeded sandbox, the real bot as a separate process, and a terminal
chat (`launcher` starts and stops them, `chat` is the session, `script_lines` parses what you type,
`render` draws messages, `traffic` makes webhooks post).

May import: `sandbox` (it drives the sandbox) and the foundation modules of `bot`; never
`bot.runtime` (the bot is a separate process here).
"""
