"""The incident toolkit, wired once: timed disables and their scheduler, the noisy-webhook
window, the audit room, and room names. The runtime makes one at start, feeds it every streamed
message (`observe`), starts it when ready and closes it at shutdown; commands reach the parts
through `Services.incident`.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Final

from bot import logs
from bot.clock import Clock
from bot.config import Settings
from bot.incident.audit_room import AuditRoom
from bot.incident.flood import FloodGuard
from bot.incident.noise import NoiseWindow, post_of
from bot.incident.scheduler import Scheduler
from bot.incident.timers import TimerService
from bot.integrations.authz import RightsCache
from bot.integrations.room_names import RoomDirectory
from bot.integrations.service import IntegrationService
from bot.rocketchat.messages import ChatMessage
from bot.rocketchat.rest import RestClient
from bot.state.store import StateStore

log = logs.get_logger("integrations_bot.incident")

# How often each replica looks for timers set, extended or ended through the others (a state
# shared by several processes only): a timer set elsewhere is armed here within this much.
SHARED_POLL: Final = timedelta(seconds=5)


class IncidentToolkit:
    def __init__(
        self,
        *,
        settings: Settings,
        rest: RestClient,
        integrations: IntegrationService,
        rights: RightsCache,
        state: StateStore,
        bot_user_id: str,
        bot_username: str,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.rest = rest
        self.clock = clock
        self.rooms = RoomDirectory(rest)
        self.audit_room = AuditRoom(rest, settings.bot_audit_room, self.rooms, ids=state.message_ids, now=clock.now)
        self.timers = TimerService(
            store=state.timers,
            state=state,
            rest=rest,
            integrations=integrations,
            rights=rights,
            bot_user_id=bot_user_id,
            bot_username=bot_username,
            clock=clock,
            audit_room=self.audit_room,
        )
        self.scheduler = Scheduler(self.timers, clock, poll=SHARED_POLL if state.shared else None)
        self.timers.wake = self.scheduler.wake
        self.noise = NoiseWindow(now=clock.now)
        self.flood = FloodGuard(
            settings=settings,
            rest=rest,
            store=state.floods,
            timers=self.timers,
            rooms=self.rooms,
            ids=lambda: state.message_ids,
            clock=clock,
        )
        self._task: asyncio.Task[None] | None = None

    def observe(self, message: ChatMessage, *, live: bool = True) -> None:
        """Every message, before intake: webhook posts feed the noisy window, and those streamed
        (`live`) and new to it (not a re-delivery) the flood guard's count (O(1), no I/O), with
        its author: anyone can set `bot.i`, only the integration's own user counts for it. What a
        catch-up pass finds after a restart or a reconnect is history, not a flood going on."""
        post = post_of(message)
        if post is not None and self.noise.add(post) and live:
            self.flood.observe(post, message.user_id)

    def start(self) -> None:
        """Start the scheduler (once): it re-arms every pending timed disable from the database."""
        if self._task is None:
            self._task = asyncio.create_task(self.scheduler.run(), name="timed-disables")

    async def aclose(self, grace: float = 2.0) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flood.aclose()
        await self.audit_room.drain(grace)
