"""The Rocket.Chat client: REST (`rest`), DDP over a websocket (`ddp` sans-I/O, `realtime` the driver),
the chat message (`messages`), the values the server hands out (`models`), EJSON dates, the bot's own
message ids and message size.

Knows no commands and no integration rules. May import: the foundation modules of `bot`
(`errors`, `logs`, `config`, `text`, `normalize`, `clock`) only.
"""
