"""A stand-in for `integrations-bot run` in the demo's orchestration tests, built from the real clients.

Configured like the bot (ROCKETCHAT_URL, ROCKETCHAT_USER_ID, ROCKETCHAT_AUTH_TOKEN), it logs the
`bot.ready` event as a JSON line once its realtime subscription is ready, then answers every
message from someone else with `echo: <text>` in the same room and thread, except a message
containing `no answer`. SIGTERM stops it cleanly (exit 0). With FAKE_BOT_CRASH set it exits 3
before becoming ready, like a bot whose credentials are refused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys

import structlog

from bot.rocketchat.messages import ChatMessage
from bot.rocketchat.realtime import RealtimeClient, ResumeCredentials, StreamEvent, websocket_url
from bot.rocketchat.rest import RestClient


async def serve() -> int:
    # Only the ready line on stdout: the clients' own log lines would fill a pipe nobody reads.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if os.environ.get("FAKE_BOT_CRASH"):
        print("fake bot: refusing to start", file=sys.stderr, flush=True)
        return 3
    url, user_id, token = (os.environ[k] for k in ("ROCKETCHAT_URL", "ROCKETCHAT_USER_ID", "ROCKETCHAT_AUTH_TOKEN"))
    rest = RestClient(url, user_id=user_id, auth_token=token)
    client = RealtimeClient(websocket_url(url), ResumeCredentials(token))
    client.subscribe("stream-room-messages", "__my_messages__", {"useCollection": False, "args": []})
    loop = asyncio.get_running_loop()
    runner = asyncio.create_task(client.run())
    closing: list[asyncio.Task[None]] = []
    loop.add_signal_handler(signal.SIGTERM, lambda: closing.append(loop.create_task(client.close())))
    await client.wait_ready(10)
    print(json.dumps({"event": "bot.ready", "state_db": os.environ.get("BOT_STATE_DB")}), flush=True)
    answered: set[str] = set()  # thread counters and reactions re-deliver a message: answer it once
    async for event in client.events():
        if not isinstance(event, StreamEvent) or event.collection != "stream-room-messages":
            continue
        message = ChatMessage.from_stream_args(event.args)
        if message is None or message.user_id == user_id or message.id in answered or "no answer" in message.text:
            continue
        answered.add(message.id)
        await rest.chat_send_message(message.room_id, f"echo: {message.text}", thread_id=message.thread_id)
    await runner
    await rest.aclose()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(serve()))
