"""integrations-bot: a Rocket.Chat bot that changes integrations from chat.

The package is layered; each folder imports only the layers below it (checked by `lint-imports`,
contracts in pyproject.toml; docs/architecture.md draws them):

    bot.ops                      the console script, `check`, `healthcheck`
    bot.runtime | bot.demo       the running bot | the terminal demo
    commands                     (a package of its own) parsing and one module per command
    bot.incident                 timed disables, `noisy`, the audit room
    bot.state                    the SQLite state file
    bot.integrations             rights, names, fields, the lossless read-modify-write
    bot.rocketchat               the Rocket.Chat client

Below them all, the foundation modules here: `errors` (the one error tree), `config` (settings),
`logs`, `text` (mention-safe text and human times), `normalize` (what phones do to typed text)
and `clock`.
"""
