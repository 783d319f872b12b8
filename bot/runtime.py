"""The running bot: wires the clients, the state and the commands, and owns the event loop.

Theory of operation
-------------------
Start-up: open the state database, log in over REST (token pair, or username/password which
yields a token), learn who the bot is (`me`), load the permission table, then start the realtime
client with the same token as a DDP `{resume}` login and subscribe to:
- `stream-room-messages` / `__my_messages__`: every message of every room the bot can see, with a
  meta argument saying whether the bot is a member (rooms it is added to later included);
- `stream-notify-logged` / `permissions-changed` and `roles-change`: to drop cached rights.

Each streamed message goes through `Intake` (a cheap synchronous filter); a command is claimed
in the state database (so a re-delivery, a reconnect or a restart never runs it twice), then run
in its own task by the `Dispatcher`, and answered in the same room and thread. The answer's
message id is derived from the command's id, so a reply retried after a network fault is stored
once. SIGTERM/SIGINT stop intake, let in-flight commands finish (bounded by
BOT_SHUTDOWN_GRACE), and close everything; a refused login is fatal (exit 1), never a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bot import logs
from bot.authz import RightsCache
from bot.config import Settings
from bot.errors import AuthFailed, BotError, ConfigError, UpstreamError
from bot.intake import Accepted, Intake
from bot.integrations import IntegrationService
from bot.messages import ChatMessage
from bot.realtime import Connected, Disconnected, RealtimeClient, ResumeCredentials, StreamEvent, SubscriptionEnded
from bot.rest import RestClient
from bot.state import StateStore
from commands import replies
from commands.context import BotIdentity, Services
from commands.parser import Invocation
from commands.registry import Dispatcher, Registry
from commands.reply import Reply
from commands.table import build_registry
from commands.text import neutralize_mentions

log = logs.get_logger("integrations_bot.runtime")

_ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"


def reply_id(command_message_id: str) -> str:
    """A Meteor-style 17-character id derived from the command's id: the reply's `_id`.

    Sending the reply twice (a retry after a timeout, a restart between sending and recording)
    then stores it once: the server refuses a second message with the same id."""
    digest = hashlib.sha256(f"integrations-bot-reply:{command_message_id}".encode()).digest()
    return "".join(_ID_ALPHABET[b % len(_ID_ALPHABET)] for b in digest[:17])


def buttons_attachment(reply: Reply) -> list[dict[str, Any]] | None:
    """Message buttons (contract §6.3) that post a command into the chat as the clicking user."""
    if not reply.buttons:
        return None
    actions = [
        {"type": "button", "text": button.text, "msg": button.command, "msg_in_chat_window": True}
        for button in reply.buttons
    ]
    return [{"button_alignment": "horizontal", "actions": actions}]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Bot:
    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.clock = clock
        self.state: StateStore | None = None
        self.rest: RestClient | None = None
        self.realtime: RealtimeClient | None = None
        self.services: Services | None = None
        self.dispatcher: Dispatcher | None = None
        self.intake: Intake | None = None
        self.registry: Registry = build_registry()
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting = True
        self._stop = asyncio.Event()
        self.ready = asyncio.Event()

    # --- start-up -------------------------------------------------------------------------------

    async def start(self) -> None:
        settings = self.settings
        for secret in (settings.rocketchat_auth_token, settings.rocketchat_password):
            if secret is not None:
                logs.register_secret(secret.get_secret_value())
        self.state = await StateStore.open(settings.bot_state_db)
        rest = RestClient(
            settings.rest_url,
            user_id=settings.rocketchat_user_id if settings.uses_token else None,
            auth_token=settings.rocketchat_auth_token if settings.uses_token else None,
            timeout=settings.bot_request_timeout,
        )
        self.rest = rest
        if not settings.uses_token:
            assert settings.rocketchat_username is not None and settings.rocketchat_password is not None
            await rest.login_password(settings.rocketchat_username, settings.rocketchat_password.get_secret_value())
        credentials = rest.credentials
        assert credentials is not None
        logs.register_secret(credentials.auth_token.get_secret_value())
        me = await rest.me()
        identity = BotIdentity(me.id, me.username or "")
        rights = RightsCache(rest, ttl=settings.bot_rights_cache_seconds)
        await rights.load_permissions()
        self.services = Services(
            rest=rest,
            integrations=IntegrationService(rest),
            rights=rights,
            state=self.state,
            settings=settings,
            identity=identity,
            clock=self.clock,
            registry=self.registry,
        )
        self.dispatcher = Dispatcher(self.registry, self.services)
        self.intake = Intake(bot_user_id=identity.user_id, bot_username=identity.username, prefixes=settings.prefixes)
        realtime = RealtimeClient(
            settings.websocket_url,
            ResumeCredentials(credentials.auth_token),
            connect_timeout=settings.bot_request_timeout,
            call_timeout=settings.bot_request_timeout,
        )
        realtime.subscribe("stream-room-messages", "__my_messages__", {"useCollection": False, "args": []})
        realtime.subscribe("stream-notify-logged", "permissions-changed", {"useCollection": False, "args": []})
        realtime.subscribe("stream-notify-logged", "roles-change", {"useCollection": False, "args": []})
        self.realtime = realtime
        log.info("bot.starting", bot_user_id=identity.user_id, bot_username=identity.username)

    # --- the loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until `stop()` or a fatal error (re-raised: AuthFailed, ConfigError)."""
        await self.start()
        assert self.realtime is not None
        realtime_task = asyncio.create_task(self.realtime.run(), name="realtime")
        events_task = asyncio.create_task(self._consume(), name="events")
        stop_task = asyncio.create_task(self._stop.wait(), name="stop")
        try:
            done, _ = await asyncio.wait({realtime_task, events_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            if realtime_task in done and realtime_task.exception() is not None:
                raise realtime_task.exception()  # type: ignore[misc]
        finally:
            await self.shutdown()
            for task in (realtime_task, events_task, stop_task):
                task.cancel()
            await asyncio.gather(realtime_task, events_task, stop_task, return_exceptions=True)

    def stop(self) -> None:
        self._stop.set()

    async def _consume(self) -> None:
        assert self.realtime is not None
        async for event in self.realtime.events():
            if isinstance(event, StreamEvent):
                self._on_stream(event)
            elif isinstance(event, Connected):
                self._on_connected(event)
            elif isinstance(event, Disconnected):
                log.warning("realtime.disconnected", reason=event.reason)
            elif isinstance(event, SubscriptionEnded):
                log.error("realtime.subscription_ended", name=event.subscription.name, reason=event.reason)

    def _on_connected(self, event: Connected) -> None:
        if not self.ready.is_set():
            self.ready.set()
            log.info("bot.ready", bot_user_id=event.user_id)
        elif event.reconnect:
            log.info("realtime.reconnected")
            # Permission changes announced while we were away are lost: reload the table.
            self._spawn(self._reload_permissions(), "reload-permissions")

    async def _reload_permissions(self) -> None:
        assert self.services is not None
        try:
            await self.services.rights.load_permissions()
        except UpstreamError as exc:
            log.warning("authz.reload_failed", error=str(exc))

    def _on_stream(self, event: StreamEvent) -> None:
        assert self.services is not None
        if event.collection == "stream-room-messages":
            message = ChatMessage.from_stream_args(event.args)
            if message is not None:
                self._on_message(message)
        elif event.collection == "stream-notify-logged":
            if event.event_name == "permissions-changed":
                self.services.rights.on_permissions_changed(event.args)
            elif event.event_name == "roles-change":
                self.services.rights.on_roles_change(event.args)

    def _on_message(self, message: ChatMessage) -> None:
        assert self.intake is not None
        if not self._accepting:
            return
        accepted = self.intake.accept(message)
        if accepted is not None:
            self._spawn(self._handle(accepted), f"command-{message.id}")

    def _spawn(self, coroutine: Any, name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- one command ----------------------------------------------------------------------------

    async def _handle(self, accepted: Accepted) -> None:
        assert self.state is not None and self.dispatcher is not None
        message = accepted.message
        if not await self.state.claim_message(message.id, message.room_id, message.ts, self.clock()):
            return
        if accepted.invocation is not None:
            reply = await self.dispatcher.dispatch(message, accepted.invocation)
        else:
            assert accepted.error is not None
            invocation = Invocation(accepted.error.command, (), message.text, "prefix")
            reply = replies.for_error(accepted.error, invocation=invocation, registry=self.registry)
        await self._answer(message, reply)

    async def _answer(self, message: ChatMessage, reply: Reply) -> None:
        assert self.rest is not None and self.state is not None
        try:
            await self.rest.chat_send_message(
                message.room_id,
                neutralize_mentions(reply.text),
                thread_id=message.thread_id,
                message_id=reply_id(message.id),
                attachments=buttons_attachment(reply),
            )
        except BotError as exc:
            log.error("reply.failed", message_id=message.id, error=str(exc))
            await self.state.finish_message(message.id, f"{reply.outcome}; reply failed")
            return
        await self.state.finish_message(message.id, reply.outcome)

    # --- shutdown -------------------------------------------------------------------------------

    async def shutdown(self) -> None:
        self._accepting = False
        if self._tasks:
            log.info("bot.draining", in_flight=len(self._tasks))
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.settings.bot_shutdown_grace)
            for task in pending:
                task.cancel()
        if self.realtime is not None:
            await self.realtime.close()
        if self.rest is not None:
            await self.rest.aclose()
        if self.state is not None:
            await self.state.close()
        log.info("bot.stopped")


async def _main(settings: Settings) -> int:
    bot = Bot(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, bot.stop)
    try:
        await bot.run()
    except AuthFailed:
        log.error("bot.auth_failed", hint="the server refused the bot's credentials; check the token or password")
        return 1
    except ConfigError as exc:
        log.error("bot.config_error", error=str(exc))
        return 2
    except UpstreamError as exc:
        log.error("bot.start_failed", error=str(exc))
        return 1
    return 0


def main(settings: Settings) -> int:
    logs.configure_logging(settings.bot_log_level, settings.bot_log_format)
    return asyncio.run(_main(settings))
