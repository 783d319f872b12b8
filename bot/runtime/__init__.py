"""The running bot (`bot.Bot`): it wires the client, the state and the commands to the websocket.
Admission of each message (`intake`, `direct_rooms`, `staleness`; `allowed_bots`: the other bot
accounts whose commands run, resolved at start), catch-up after a drop
(`catchup`), turns per caller (`fairness`), posting answers (`outbound`), the write journal and
recovery after a crash (`journal`, `recovery`), metrics and the health endpoint.

May import: `commands` and every layer below it; never `bot.ops` or `bot.demo`.
"""
