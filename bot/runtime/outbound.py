"""Posting the bot's answers: one id chain per answer, and retrying until it is stored.

Every answer to a command message has its ids derived from the command's id with the state
file's secret key (`MessageIds.answer`, bot/rocketchat/message_ids.py). Posting the same answer twice
therefore stores it once: the server refuses a second message with the same id
(`error-duplicate-message`) and `RestClient.chat_send_message` then returns the stored one, when
it is the bot's own in that room; an id someone else holds is skipped for the next of the chain
(`message_ids.post`). That makes re-sending always safe, so an answer is never given up on
because Rocket.Chat is slow, rate-limiting or briefly down:

- `RestClient` already retries 5xx/timeouts a few times with backoff and waits out 429s;
- when that is not enough (`Unavailable`, `RateLimited`), `ReplySender.deliver` waits and tries
  again, with capped exponential backoff, for as long as the process runs. The command's claim
  stays unfinished meanwhile; if the process stops first, the restart resumes the command
  (`bot.runtime.recovery`) and the answer is posted then;
- a refusal (`ServerRejected`: the room is gone, the bot may not post there) is final: logged,
  and the claim is finished with that outcome;
- `AuthFailed` is left to the runtime, which stops the bot (the claim stays unfinished).

One stored message is replaced rather than kept: the "I can't record commands right now, so I did
not run this one" notice (`replies.UNRECORDED`), which a replica cut off from the shared database
posts at the ids of a command's answer while another replica, which could claim the command, may
be running it (slower than the notice's wait). The real answer, finding the notice at its id, is
written over it (`chat.update`, shown as an edit): the author is never left told that nothing
changed when it did. (Its buttons are not carried by an edit.)
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from typing import Any, Final

from bot import logs
from bot.errors import AuthFailed, RateLimited, ServerRejected, Unavailable
from bot.rocketchat import message_ids
from bot.rocketchat.message_ids import MessageIds
from bot.rocketchat.messages import ChatMessage
from bot.rocketchat.rest import RestClient
from bot.runtime.metrics import Metrics
from bot.text import neutralize_mentions
from commands.replies import UNRECORDED
from commands.reply import Reply

log = logs.get_logger("integrations_bot.outbound")

RETRY_INITIAL: Final = 1.0
UNRECORDED_TEXT: Final = neutralize_mentions(UNRECORDED)
RETRY_MAX: Final = 30.0


def buttons_attachment(reply: Reply) -> list[dict[str, Any]] | None:
    """Message buttons (contract §6.3) that post a command into the chat as the clicking user."""
    if not reply.buttons:
        return None
    actions = [
        {"type": "button", "text": button.text, "msg": button.command, "msg_in_chat_window": True}
        for button in reply.buttons
    ]
    return [{"button_alignment": "horizontal", "actions": actions}]


class Delivery(enum.Enum):
    POSTED = "posted"
    REJECTED = "rejected"  # the server refused the message for good
    AUTH_FAILED = "auth-failed"  # the bot's credentials were refused; the runtime stops


class ReplySender:
    def __init__(
        self,
        rest: RestClient,
        ids: MessageIds,
        metrics: Metrics,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        retry_initial: float = RETRY_INITIAL,
        retry_max: float = RETRY_MAX,
    ) -> None:
        self._rest = rest
        self._ids = ids
        self._metrics = metrics
        self._sleep = sleep
        self._retry_initial = retry_initial
        self._retry_max = retry_max

    async def deliver(
        self, message: ChatMessage, reply: Reply, *, then: Callable[[bool], Awaitable[None]] | None = None
    ) -> Delivery:
        """Post `reply` in the command's room and thread; returns once it is stored or refused.

        `then` runs once, right after the first attempt, whatever its result (told whether the
        answer is what was stored at its ids by then): book-keeping that should neither hold up the answer nor wait for
        an outage to end (commands/followups.py). It must not raise."""
        delay = self._retry_initial
        waiting = False
        try:
            while True:
                try:
                    text = neutralize_mentions(reply.text)
                    posted = False
                    try:
                        stored = await message_ids.post(
                            self._rest,
                            self._ids.answer(message.id),
                            message.room_id,
                            text,
                            thread_id=message.thread_id,
                            attachments=buttons_attachment(reply),
                        )
                        # Its answer is what is stored (not a "not run" notice, replaced below).
                        posted = stored.get("msg") != UNRECORDED_TEXT or text == UNRECORDED_TEXT
                    finally:
                        if then is not None:
                            first, then = then, None
                            await first(posted)
                    if stored.get("msg") == UNRECORDED_TEXT and text != UNRECORDED_TEXT:
                        await self._replace_notice(message, stored, text)
                    return Delivery.POSTED
                except (Unavailable, RateLimited) as exc:
                    if isinstance(exc, RateLimited) and exc.retry_after is not None:
                        delay = max(delay, min(exc.retry_after, self._retry_max))
                    if not waiting:
                        waiting = True
                        self._metrics.replies_pending.inc()
                    log.warning("reply.retry_later", message_id=message.id, error=str(exc), retry_in=round(delay, 1))
                    await self._sleep(delay)
                    delay = min(self._retry_max, delay * 2)
                except ServerRejected as exc:
                    log.error("reply.rejected", message_id=message.id, room_id=message.room_id, error=str(exc))
                    return Delivery.REJECTED
                except AuthFailed:
                    return Delivery.AUTH_FAILED
        finally:
            if waiting:
                self._metrics.replies_pending.dec()

    async def _replace_notice(self, message: ChatMessage, notice: dict[str, Any], text: str) -> None:
        """Write the command's answer over the "not run" notice found at its id (see the module
        docstring). A refusal (editing switched off on the server) leaves the notice, logged."""
        try:
            await self._rest.chat_update(message.room_id, str(notice["_id"]), text)
        except ServerRejected as exc:
            log.error("reply.notice_not_replaced", message_id=message.id, error=str(exc))
            return
        log.warning(
            "reply.notice_replaced",
            message_id=message.id,
            hint="another replica, cut off from the database, had answered it 'not run' while this one ran it",
        )


__all__ = ["Delivery", "ReplySender", "buttons_attachment"]
