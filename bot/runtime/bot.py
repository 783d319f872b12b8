"""The running bot: wires the clients, the state and the commands, and owns the event loop.

Theory of operation
-------------------
Start-up: open the state database (and note the commands a previous process left unfinished),
start the optional HTTP endpoint (`bot.runtime.health`), log in over REST (token pair, or
username/password which yields a token), learn who the bot is (`me`), load the permission table
and resolve BOT_ALLOWED_BOTS to accounts (retrying while Rocket.Chat is unavailable), then start
the realtime client with the same token as a DDP `{resume}` login and subscribe to:
- `stream-room-messages` / `__my_messages__`: every message of every room the bot can see, with a
  meta argument saying whether the bot is a member (rooms it is added to later included);
- `stream-notify-logged` / `permissions-changed` and `roles-change`: to drop cached rights.

Every message, streamed or found by a catch-up pass (`bot.runtime.catchup`), goes through one admission
path, in order: `Intake` (a cheap synchronous filter; a new DM's members are looked up first) →
staleness (`bot.runtime.staleness`) → a claim in the state database (so a re-delivery, a reconnect or
a restart never runs it twice; a change's reads begin while it is in flight, `bot.runtime.read_ahead`)
→ the room's cursor. A claimed command waits its turn in its
caller's lane (`bot.runtime.fairness`: a few at a time per caller, changes before reads, a flood beyond
the lane's bound answered "busy"), then runs in its own task: its author is checked (another bot
account that is not one BOT_ALLOWED_BOTS lists, by id: the names are resolved to accounts at start,
`bot.runtime.allowed_bots`; the claim is closed as ignored, nothing runs, no answer), then the
`Dispatcher` (or the stale answer), then the answer is posted in the same room and thread by
`bot.runtime.outbound` (its id derived from the command's id with the state file's secret key,
`bot.rocketchat.message_ids`; retried until stored), the book-keeping the command deferred runs right after
the first attempt to post it (`commands.followups`), then the claim is finished. Integration
writes are journaled (`bot.runtime.journal`), so commands a crash left unfinished are resumed at the next
start without applying a change twice (`bot.runtime.recovery`).

Each `Connected` of the realtime client (logged in, every subscription ready) triggers a catch-up
pass; each drop holds the cursors until the next pass completes. Permission changes announced
while disconnected (or before the first subscriptions were ready) are caught up by reading the
permission table again, which every rights decision waits for (`RightsCache.unheard`).

SIGTERM/SIGINT stop intake, let in-flight commands finish (bounded by BOT_SHUTDOWN_GRACE), start
none of those still waiting in a lane (their claims stay open: the next start resumes them, as
after a crash), and close everything (exit 0). The bot's own credentials being refused (a 401 on any REST call, a
refused DDP resume) is fatal: logged once as `bot.auth_failed`, exit 1, never a retry loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import signal
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

from bot import logs
from bot.clock import SystemClock
from bot.config import Settings
from bot.errors import (
    AuthFailed,
    BotError,
    ConfigError,
    RateLimited,
    ServerRejected,
    StateBusy,
    StateUnavailable,
    Unavailable,
    UpstreamError,
)
from bot.incident.toolkit import IncidentToolkit
from bot.integrations.authz import CallerRights, RightsCache, may_list
from bot.integrations.service import Prefetch
from bot.rocketchat import message_size
from bot.rocketchat.message_ids import own_at
from bot.rocketchat.messages import ChatMessage
from bot.rocketchat.models import UserInfo
from bot.rocketchat.realtime import (
    Connected,
    Disconnected,
    RealtimeClient,
    RealtimeEvent,
    RealtimeState,
    ResumeCredentials,
    StreamEvent,
    SubscriptionEnded,
)
from bot.rocketchat.rest import RequestRecord, RestClient
from bot.runtime.allowed_bots import AllowedBots, resolve_allowed_bots
from bot.runtime.catchup import CLAIM_RETENTION, CatchUp, CursorBook, Room, member_rooms
from bot.runtime.direct_rooms import DirectRooms
from bot.runtime.fairness import Job, Lanes, busy_reply
from bot.runtime.health import HttpServer, Probe
from bot.runtime.homes import ALIVE, BACKUP_DELAY, HEARTBEAT, Deferred, Homes, Left
from bot.runtime.intake import Accepted, Intake
from bot.runtime.journal import CommandRun, JournaledIntegrationService, current_command
from bot.runtime.metrics import Metrics
from bot.runtime.outbound import Delivery, ReplySender, buttons_attachment
from bot.runtime.read_ahead import EarlyReads, ReadAhead
from bot.runtime.recovery import Close, Decision, Interrupted, Recovery, Resume
from bot.runtime.staleness import (
    CATCHUP_HORIZON,
    Freshness,
    as_it_ran,
    first_delivery,
    freshness,
    interrupted_reply,
    stale_reply,
)
from bot.state.owner import StateFileOwner
from bot.state.store import ClaimedCommand, StateStore
from commands import replies, targets
from commands.context import BotIdentity, Services
from commands.followups import Closing, FollowUp
from commands.parser import Invocation
from commands.registry import Command, Dispatcher, Registry, new_correlation_id
from commands.reply import Reply
from commands.table import build_registry

# Seconds this host's clock may differ from the shared database server's before it is said
# (`_watch_clock`): well within what leases bear (about two thirds of `BOT_CLAIM_LEASE`, 30 s).
CLOCK_TOLERANCE: Final = 5.0
HOMES_TICK: Final = 0.25  # seconds between looks at the commands left to their home (`_keep_homes`)
CLAIMS_TASK: Final = "claims"  # the task that renews, checks and takes over claims (`_keep_claims`)
log = logs.get_logger("integrations_bot.runtime")

__all__ = ["Bot", "buttons_attachment", "main", "utcnow"]

_T = TypeVar("_T")
# How a command is run again after a restart: not (None), or as recovery decided (`Resume`).
Recovering = Resume | None

MESSAGES_STREAM: Final = "stream-room-messages"
RIGHTS_STREAM: Final = "stream-notify-logged"  # `permissions-changed` and `roles-change`
CURSOR_FLUSH_INTERVAL: Final = 2.0  # seconds between cursor writes (a lagging cursor is harmless)
PRUNE_INTERVAL: Final = 3600.0  # seconds between prunes of old claims
TROUBLE_CLAIM: Final = 1.0  # seconds: a claim slower than this may have raced a replica that gave up
TROUBLE_MEMORY: Final = 60.0  # seconds after an outage during which claims are treated as in trouble
# Seconds a command waits for the state database before it is answered "not run" (a fail-over,
# a restart usually takes less; meanwhile it is simply late). Commands waiting at most, in memory.
NOTICE_AFTER: Final = 10.0
WAITING_CLAIMS_MAX: Final = 10_000
STATE_RETRY: Final = 1.0  # seconds between checks of the state database while it is unavailable
# Seconds after the database server started during which no replica takes over expired claims:
# their owners, which retry every STATE_RETRY while it is away, renew (or close) them first.
RESTART_SETTLE: Final = 5 * STATE_RETRY
START_RETRY_MAX: Final = 30.0  # seconds, the longest wait between start-up attempts
FLOOD_ROWS_KEPT: Final = timedelta(days=1)  # flood notices' rows kept this long after their quiet period


def _key_seed(settings: Settings) -> bytes | None:
    """The bot's secret its message-id key is derived from (bot/rocketchat/message_ids.py `derive_key`)."""
    secret = settings.rocketchat_auth_token or settings.rocketchat_password
    return secret.get_secret_value().encode() if secret is not None else None


def _claims_of(wanted: Sequence[Accepted]) -> tuple[list[tuple[str, str, datetime]], dict[str, ClaimedCommand]]:
    """The claims of accepted commands (message id, room id, message time), and what each said and
    who said it, kept on its claim while it runs (the recovery's, bot/runtime/recovery.py)."""
    claims = [(a.message.id, a.message.room_id, a.message.ts) for a in wanted]
    commands = {
        a.message.id: ClaimedCommand(a.message.text, a.message.user_id, a.message.username, a.message.thread_id)
        for a in wanted
    }
    return claims, commands


def utcnow() -> datetime:
    return datetime.now(UTC)


class Bot:
    def __init__(
        self, settings: Settings, *, clock: Callable[[], datetime] = utcnow, metrics: Metrics | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = metrics if metrics is not None else Metrics()
        self.state: StateStore | None = None
        self.rest: RestClient | None = None
        self.realtime: RealtimeClient | None = None
        self.services: Services | None = None
        self.dispatcher: Dispatcher | None = None
        self.intake: Intake | None = None
        self.allowed_bots = AllowedBots()  # BOT_ALLOWED_BOTS as accounts, resolved at start
        self.cursors: CursorBook | None = None
        self.catchup: CatchUp | None = None
        self.recovery: Recovery | None = None
        self.journal: JournaledIntegrationService | None = None
        self.sender: ReplySender | None = None
        self.http: HttpServer | None = None
        self.incident: IncidentToolkit | None = None
        self.registry: Registry = build_registry()
        self._tasks: set[asyncio.Task[None]] = set()
        self.lanes = Lanes(per_caller=settings.bot_caller_concurrency, queue=settings.bot_caller_queue)
        self._waiting: dict[Job, tuple[Accepted, bool, Recovering]] = {}  # job → (command, stale, recovering)
        # Reads begun at admission, before the claim, for the commands' turns (bot/runtime/read_ahead.py).
        self.read_ahead = ReadAhead()
        # When each claimed command waiting for or in its turn arrived (`RightsCache.moment`): its
        # author's rights read fresh since then may serve it (a burst of theirs reads them once).
        self._arrivals: dict[str, float] = {}
        self._accepting = True
        self._deaf = False
        self._state_open = False
        self._state_reachable = True  # the last statement (or the periodic check) worked
        # Commands answered "not run" during a state outage (id → when): never run afterwards,
        # even by a pass that finds them before the notice is stored.
        self._not_run: dict[str, datetime] = {}
        # Commands whose claim failed (the database away): id → (command, freshness, origin, loop
        # time of the failure). Claimed again every second until it works (`_claim_waiting`).
        self._waiting_claims: dict[str, tuple[Accepted, Freshness, str, float]] = {}
        # For each waiting command, the moments (`now`) of its own claims that failed, within the
        # last lease: one may have committed with its reply lost (`StateStore.claim_messages`,
        # `tried`). Its own only: another command's moment may be the claim of an earlier delivery
        # of this one, running here (`_tried_claims`).
        self._claims_tried: dict[str, list[datetime]] = {}
        # Set when a command starts waiting for its claim: the claims keeper, asleep for a third of
        # the lease, then tries again within STATE_RETRY (`_keep_claims`).
        self._claim_failed = asyncio.Event()
        # Whose callers' commands this replica claims first (bot/runtime/homes.py), and the commands
        # it leaves to another replica, the caller's home.
        self.homes: Homes | None = None
        self._left = Left(WAITING_CLAIMS_MAX)
        self._look: asyncio.Future[list[str]] | None = None  # the last read of the list (`_keep_homes`)
        # Commands claimed in trouble (the claim was slow, or the database failed lately): another
        # replica may have answered them "not run" meanwhile; looked up before they run.
        self._troubled: set[str] = set()
        # Claims of this process whose command has not ended its turn: the only leases renewed.
        self._running: set[str] = set()
        # Commands answered while the database was away, whose record or claim waits for it
        # (message id → the outcome to close the claim with, the follow-ups still to run).
        self._unsettled: dict[str, tuple[str, tuple[FollowUp, ...]]] = {}
        self._last_outage: float | None = None  # loop time of the last StateUnavailable
        self._clock_off = False  # this host's clock is off the database server's (`_watch_clock`)
        self._sweep_task: asyncio.Task[None] | None = None  # deciding claims taken over (`_sweep_taken`)
        self._settle_task: asyncio.Task[None] | None = None  # book-keeping left by an outage (`_settle_apart`)
        # Loop time of the last renewal of this process's claims, and of the end of the last gap
        # between two renewals long enough for a lease to run out (`_keep_claims`), and when each
        # command in a lane was claimed: one claimed before such a gap may have been taken over.
        self._renewed_at: float | None = None
        self._lapsed_at: float | None = None
        self._claimed_at: dict[str, float] = {}
        self._owner: StateFileOwner | None = None
        self._fatal: AuthFailed | None = None
        self._stop = asyncio.Event()
        self.ready = asyncio.Event()

    # --- start-up -------------------------------------------------------------------------------

    async def start(self) -> bool:
        """Connect everything but the realtime session. False when stopped before it was done."""
        settings = self.settings
        for secret in (settings.rocketchat_auth_token, settings.rocketchat_password):
            if secret is not None:
                logs.register_secret(secret.get_secret_value())
        state = await self._open_state()
        if state is None:
            return False
        self.state = state
        self._state_open = True
        if state.shared:
            # Imported only here: psycopg and its pool are ~10 MB of a SQLite bot's memory otherwise.
            from bot.state.postgres import SharedIntegrationLocks

            if isinstance(state.locks, SharedIntegrationLocks):
                state.locks.on_wait = self.metrics.lock_wait_seconds.observe
        # Before anything can claim a message: the unfinished commands of processes that are gone
        # (a SQLite file: all its previous process left; a shared database: expired leases).
        orphans = await self._until_stored(lambda: state.take_over(self.clock()))
        if orphans is None:
            return False
        if settings.bot_http_port is not None:
            self.http = HttpServer(self.probe, self.metrics)
            await self.http.start(settings.bot_http_host, settings.bot_http_port)
        rest = RestClient(
            settings.rest_url,
            user_id=settings.rocketchat_user_id if settings.uses_token else None,
            auth_token=settings.rocketchat_auth_token if settings.uses_token else None,
            timeout=settings.bot_request_timeout,
            on_request=self._on_request,
        )
        self.rest = rest
        rights = RightsCache(rest, ttl=settings.bot_rights_cache_seconds)
        me = await self._until_up(lambda: self._log_in(rest, rights))
        if me is None:
            return False
        credentials = rest.credentials
        assert credentials is not None
        logs.register_secret(credentials.auth_token.get_secret_value())
        identity = BotIdentity(me.id, me.username or "")
        integrations = JournaledIntegrationService(rest, self.state, self.clock)
        self.journal = integrations
        self.incident = IncidentToolkit(
            settings=settings,
            rest=rest,
            integrations=integrations,
            rights=rights,
            state=self.state,
            bot_user_id=identity.user_id,
            bot_username=identity.username,
            clock=SystemClock(self.clock),
        )
        self.services = Services(
            rest=rest,
            integrations=integrations,
            rights=rights,
            state=self.state,
            settings=settings,
            identity=identity,
            clock=self.clock,
            registry=self.registry,
            incident=self.incident,
        )
        self.dispatcher = Dispatcher(self.registry, self.services)
        self.dispatcher.observers.append(self.metrics.observe_command)
        self.intake = Intake(
            bot_user_id=identity.user_id,
            bot_username=identity.username,
            prefixes=settings.prefixes,
            direct_rooms=DirectRooms(rest),
            allowed_bot_ids=self.allowed_bots.ids,
        )
        self.sender = ReplySender(rest, self.state.message_ids, self.metrics)
        self.cursors = CursorBook(self.state)
        self.recovery = Recovery(
            orphans,
            rest=rest,
            ids=self.state.message_ids,
            intake=self.intake,
            journal=integrations,
            claims=self.state,
            clock=self.clock,
            stale_age=settings.bot_stale_command_age,
        )
        self.catchup = CatchUp(
            rest,
            self.state,
            self.cursors,
            self._admit,
            clock=self.clock,
            stale_age=settings.bot_stale_command_age,
            metrics=self.metrics,
            before_pass=self._recover,
        )
        realtime = RealtimeClient(
            settings.websocket_url,
            ResumeCredentials(credentials.auth_token),
            connect_timeout=settings.bot_request_timeout,
            call_timeout=settings.bot_request_timeout,
        )
        realtime.subscribe(MESSAGES_STREAM, "__my_messages__", {"useCollection": False, "args": []})
        realtime.subscribe(RIGHTS_STREAM, "permissions-changed", {"useCollection": False, "args": []})
        realtime.subscribe(RIGHTS_STREAM, "roles-change", {"useCollection": False, "args": []})
        self.realtime = realtime
        log.info("bot.starting", bot_user_id=identity.user_id, bot_username=identity.username, unfinished=len(orphans))
        return True

    async def _open_state(self) -> StateStore | None:
        """The SQLite file (locked against a second bot first), or the shared PostgreSQL, tried
        until it answers (it may be starting too). None if stopped first."""
        settings = self.settings
        lease = timedelta(seconds=settings.bot_claim_lease)
        options: dict[str, Any] = {"key_seed": _key_seed(settings), "lease": lease}
        if settings.bot_state_url is None:
            # First: a second bot on this file stops here, before it claims, answers or arms anything.
            self._owner = StateFileOwner.acquire(settings.bot_state_db)
            return await StateStore.open(settings.bot_state_db, **options)
        url = settings.bot_state_url.get_secret_value()
        logs.register_secret(url)
        return await self._until_stored(
            lambda: StateStore.connect(
                url, connect_timeout=settings.bot_request_timeout, prepare=settings.bot_state_prepare, **options
            )
        )

    async def _until_stored(self, step: Callable[[], Coroutine[Any, Any, _T]]) -> _T | None:
        """Run `step` until the state database answers. None if stopped first."""
        delay = 1.0
        while not self._stop.is_set():
            try:
                return await step()
            except StateUnavailable as exc:
                self._state_failed(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            delay = min(START_RETRY_MAX, delay * 2)
        return None

    async def _log_in(self, rest: RestClient, rights: RightsCache) -> UserInfo:
        settings = self.settings
        if rest.credentials is None:
            assert settings.rocketchat_username is not None and settings.rocketchat_password is not None
            await rest.login_password(settings.rocketchat_username, settings.rocketchat_password.get_secret_value())
        me = await rest.me()
        await rights.load_permissions()
        await self._learn_message_limit(rest)
        await self._resolve_allowed_bots(rest)
        return me

    async def _resolve_allowed_bots(self, rest: RestClient) -> None:
        """BOT_ALLOWED_BOTS as the accounts it names now (bot/runtime/allowed_bots.py): matched by
        id from here on, whatever those accounts are called later. Unanswered: raises, and the start retries."""
        settings = self.settings
        if not settings.bot_allowed_bots:
            return
        allowed = await resolve_allowed_bots(rest, names=settings.allowed_bot_names, ids=settings.allowed_bot_ids)
        self.allowed_bots = allowed
        log.info("bot.allowed_bots", accounts=sorted(allowed.ids), names=dict(allowed.names))
        for entry, why in allowed.missing.items():
            log.warning(
                "bot.allowed_bot_missing",
                entry=entry,
                why=why,
                hint="BOT_ALLOWED_BOTS: this entry names no account, so it allows nobody; "
                "an account created with that name later is allowed from the next start",
            )

    async def _learn_message_limit(self, rest: RestClient) -> None:
        """The server's message size limit (a public setting): every message the bot posts is
        fitted into it (bot/rocketchat/message_size.py). Not readable: the default, which is also the server's."""
        try:
            values = await rest.settings_public([message_size.SETTING])
        except ServerRejected as exc:
            values = {}
            log.warning("bot.message_limit_unknown", error=str(exc), assumed=message_size.DEFAULT_LIMIT)
        rest.message_limit = message_size.limit_from(values)
        log.info("bot.message_limit", limit=rest.message_limit)

    async def _until_up(self, step: Callable[[], Coroutine[Any, Any, UserInfo]]) -> UserInfo | None:
        """Run `step` until it works: Rocket.Chat may be restarting too. None if stopped first."""
        attempt = 0
        while not self._stop.is_set():
            try:
                return await step()
            except (Unavailable, RateLimited) as exc:
                attempt += 1
                delay = min(START_RETRY_MAX, 2.0 ** (attempt - 1))
                log.warning("bot.start_retry", error=str(exc), attempt=attempt, retry_in=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
        return None

    # --- the loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until `stop()` or a fatal error (re-raised: AuthFailed, ConfigError)."""
        background: list[asyncio.Task[None]] = []
        realtime_task: asyncio.Task[None] | None = None
        try:
            if not await self.start():
                return
            assert self.realtime is not None and self.catchup is not None
            realtime_task = asyncio.create_task(self.realtime.run(), name="realtime")
            background = [
                asyncio.create_task(self._consume(), name="events"),
                asyncio.create_task(self.catchup.run(), name="catch-up"),
                asyncio.create_task(self._maintain(), name="maintenance"),
                asyncio.create_task(self._keep_claims(), name=CLAIMS_TASK),
                asyncio.create_task(self._keep_homes(), name="homes"),
            ]
            stop_task = asyncio.create_task(self._stop.wait(), name="stop")
            done, _ = await asyncio.wait({realtime_task, stop_task, *background}, return_when=asyncio.FIRST_COMPLETED)
            stop_task.cancel()
            for task in done:
                if task is not stop_task and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            if self._fatal is not None:
                raise self._fatal
        finally:
            await self.shutdown(background)
            if realtime_task is not None:
                realtime_task.cancel()
                await asyncio.gather(realtime_task, return_exceptions=True)

    def stop(self) -> None:
        self._stop.set()

    async def _consume(self) -> None:
        """Events in order. Messages received together (a burst of commands) are admitted
        together: one claim statement for all of them, instead of one commit per message while
        the rest of the burst waits behind it."""
        assert self.realtime is not None
        async for first in self.realtime.events():
            messages: list[ChatMessage] = []
            for event in (first, *self.realtime.pending()):
                if isinstance(event, StreamEvent) and event.collection == MESSAGES_STREAM:
                    message = ChatMessage.from_stream_args(event.args)
                    if message is not None:
                        messages.append(message)
                    continue
                if messages:
                    await self._admit_all(messages, "stream")
                    messages = []
                await self._on_event(event)
            if messages:
                await self._admit_all(messages, "stream")

    async def _on_event(self, event: RealtimeEvent) -> None:
        if isinstance(event, StreamEvent):
            await self._on_stream(event)
        elif isinstance(event, Connected):
            self._on_connected(event)
        elif isinstance(event, Disconnected):
            self._on_disconnected(event)
        elif isinstance(event, SubscriptionEnded):
            log.error("realtime.subscription_ended", name=event.subscription.name, reason=event.reason)
            if event.subscription.name == MESSAGES_STREAM:
                self._deaf = True
            elif event.subscription.name == RIGHTS_STREAM and self.services is not None:
                # Role and permission changes are no longer announced to this replica: it reads
                # the permission table for every decision instead of trusting what it holds.
                self.services.rights.deafened()

    def _on_connected(self, event: Connected) -> None:
        assert self.catchup is not None and self.services is not None
        self.metrics.realtime_connected.set(1)
        # Role and permission changes announced before the subscriptions were ready (while away,
        # or since the table was read at start) were not heard: no cached right and no permission
        # counts until the table is read again, which every decision waits for (`RightsCache.unheard`).
        self.services.rights.unheard()
        self._spawn(self._reload_permissions(), "reload-permissions")
        if not self.ready.is_set():
            self.ready.set()
            log.info("bot.ready", bot_user_id=event.user_id)
            if self.incident is not None:
                self.incident.start()  # re-arms the timed disables stored by earlier runs
        elif event.reconnect:
            self.metrics.reconnects.inc()
            log.info("realtime.reconnected")
        self.catchup.request()

    def _on_disconnected(self, _event: Disconnected) -> None:
        assert self.catchup is not None
        self.metrics.realtime_connected.set(0)
        self.metrics.disconnects.inc()
        if self.services is not None:
            self.services.rights.unheard()  # changes announced from now on are missed until the reconnect
        self.catchup.interrupted()  # the realtime client has logged the drop and its reason

    async def _reload_permissions(self) -> None:
        """The table read again at once (`RightsCache.refresh`); a failure is said here, and the next
        decision tries again (and fails closed): no right counts on a table that missed a change."""
        assert self.services is not None
        try:
            await self.services.rights.refresh()
        except UpstreamError as exc:
            log.warning("authz.reload_failed", error=str(exc), hint="the next command reads the permissions again")

    async def _on_stream(self, event: StreamEvent) -> None:
        """Streams other than the messages (those are admitted by `_consume`)."""
        assert self.services is not None
        if event.collection == RIGHTS_STREAM:
            if event.event_name == "permissions-changed":
                self.services.rights.on_permissions_changed(event.args)
            elif event.event_name == "roles-change":
                self.services.rights.on_roles_change(event.args)

    def _on_request(self, record: RequestRecord) -> None:
        self.metrics.observe_request(record)
        if record.outcome == "auth_failed" and self._fatal is None:
            self._fatal = AuthFailed(record.endpoint, f"{record.endpoint}: the bot's credentials were refused")
            self._stop.set()

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        # A context of its own: nothing of the task that spawned it (a command's prefetched read,
        # its journal run, its log bindings) leaks into the next command.
        task = asyncio.create_task(coroutine, name=name, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- admission: the one path from a message to a claimed command ----------------------------

    async def _admit(self, message: ChatMessage, origin: str) -> None:
        """A message from the stream or a catch-up pass (see `_admit_all`)."""
        await self._admit_all([message], origin)

    async def _admit_all(self, messages: list[ChatMessage], origin: str) -> None:
        """Messages in the order received. Rooms' cursors move only after the claims are
        committed, so a stored cursor never passes a command that was not taken."""
        assert self.intake is not None and self.cursors is not None and self.state is not None
        if self.incident is not None:
            live = origin == "stream"  # a catch-up pass's finds feed `noisy`, not the flood guard
            for message in messages:
                self.incident.observe(message, live=live)  # webhook posts feed `noisy` before intake drops them
        if not self._accepting:
            return
        if not self._left.quiet():
            for message in messages:
                # Only the bot's own message is an answer: anyone may post at a chosen id, and one
                # who learnt the key must not make the replicas forget a command its home never ran.
                if self._left.expects(message.id) and message.user_id == self.intake.bot_user_id:
                    self._home_answered(message.id)
        try:
            await self.intake.prepare(messages)  # a new DM's members: is it the author and the bot alone?
        except UpstreamError as exc:
            log.warning("intake.dm_lookup_failed", error=str(exc), hint="commands there need the prefix until it works")
        now = self.clock()
        wanted: list[tuple[Accepted, Freshness]] = []
        for message in messages:
            accepted = self.intake.accept(message)
            if accepted is None or message.id in self._not_run or message.id in self._waiting_claims:
                continue
            if message.id in self._left:
                continue
            age = freshness(message.ts, now, self.settings.bot_stale_command_age)
            if age is Freshness.TOO_OLD:
                log.info("command.too_old", message_id=message.id, room_id=message.room_id, origin=origin)
                continue
            wanted.append((accepted, age))
        if wanted and origin == "stream":
            wanted = self._leave_to_homes(wanted)
        if wanted:
            # Seen on the stream for the first time (not a re-delivery of a command claimed already).
            first: set[str] = set()
            if origin == "stream":
                first = {a.message.id for a, _ in wanted if self.read_ahead.first_sight(a.message.id)}
                self.read_ahead.sighted(a.message.id for a, _ in wanted)
            # When they arrived, on the rights cache's clock: a fresh read of their author's
            # rights begun since then is as good as one begun at their turn (`RightsCache.get`).
            assert self.services is not None
            arrived = self.services.rights.moment()
            # Begun before the claim, which they do not wait for; cancelled unless handed to a turn.
            early = self._read_ahead(wanted, first, arrived)
            try:
                if early:
                    # Sent before the claim's statement (a few hundred µs of this thread to build
                    # and send): the reads take longer to come back, and the claim's round trip
                    # then fits in their wait (measured: they began 0.3–0.5 ms sooner).
                    await asyncio.sleep(0)
                if await self._claim_all(wanted, origin, now, early, first, arrived=arrived) is None:
                    return  # the commands wait for the database (`_claim_waiting`); cursors stay where they are
            finally:
                for reads in early.values():
                    reads.cancel()
        for message in messages:
            if message.room_participant is True:
                self.cursors.seen(message.room_id, message.updated_at)

    async def _claim_all(
        self,
        wanted: list[tuple[Accepted, Freshness]],
        origin: str,
        now: datetime,
        early: dict[str, EarlyReads],
        first: set[str],
        *,
        arrived: float,
    ) -> int | None:
        """Claim the admitted commands (one statement) and take those won into their callers'
        lanes, with the reads begun for them (`early`: what is left in it is not run); how many
        were won. None when the database failed: the commands wait for it. `first`: the ids seen for the
        first time on the stream (one of them lost: another replica claimed it)."""
        assert self.state is not None
        try:
            started = asyncio.get_running_loop().time()
            claimed = await self._claim([a for a, _ in wanted], now)
            if self._in_trouble(since=started):
                self._troubled.update(claimed)
            else:  # posted before the database (re)started: in trouble too, however fast this claim was
                restarted = self.state.server_started
                self._troubled.update(
                    a.message.id for a, _ in wanted if a.message.id in claimed and a.message.ts.timestamp() < restarted
                )
        except StateUnavailable as exc:
            # Nothing runs unclaimed: the commands wait for the database (`_claim_waiting`),
            # and are answered "not run" only if it stays away. Cursors stay where they are.
            self._state_failed(exc)
            started = asyncio.get_running_loop().time()
            self._claim_failed.set()
            assert self.cursors is not None
            for accepted, age in wanted:
                if len(self._waiting_claims) < WAITING_CLAIMS_MAX:
                    self._waiting_claims.setdefault(accepted.message.id, (accepted, age, origin, started))
                    self._claims_tried.setdefault(accepted.message.id, []).append(now)
                    # What its room admits meanwhile is stored once it is claimed (`_claim_waiting`).
                    self.cursors.keep(accepted.message.room_id, accepted.message.id)
            return None
        self._state_worked()
        won = len(claimed)
        self.metrics.claims.labels(result="won").inc(won)
        self.metrics.claims.labels(result="lost").inc(len(wanted) - len(claimed))
        lost = first - claimed
        if lost and (self.homes is None or not self.homes.shared() or self._behind(wanted, lost, now)):
            # Another replica claimed a command this one saw first-hand: they race for commands,
            # and reads begun before the claim would mostly be thrown away (bot/runtime/read_ahead.py).
            # Not so while the replicas share their callers (bot/runtime/homes.py): a claim lost
            # then is one of the moments their lists disagree (a replica came or went), unless
            # this replica heard it after the others' backup claims were due (it is behind).
            self.read_ahead.lost()
        for accepted, age in wanted:
            if accepted.message.id in claimed:
                claimed.discard(accepted.message.id)  # listed twice in this batch: run once
                self._take(accepted, age, origin, early.pop(accepted.message.id, None), arrived)
            else:
                self.metrics.duplicates.labels(origin=origin).inc()
                if origin == "catch-up":
                    self.metrics.catchup_commands.labels(result="duplicate").inc()
        return won

    # --- homes: which replica claims a caller's commands first (bot/runtime/homes.py) ---------------

    @staticmethod
    def _behind(wanted: list[tuple[Accepted, Freshness]], lost: set[str], now: datetime) -> bool:
        """Whether a command lost was admitted here later than `BACKUP_DELAY` after it was posted."""
        late = now - timedelta(seconds=BACKUP_DELAY)
        return any(a.message.ts < late for a, _ in wanted if a.message.id in lost)

    def _leave_to_homes(self, wanted: list[tuple[Accepted, Freshness]]) -> list[tuple[Accepted, Freshness]]:
        """The commands this replica claims now: its own callers'. The others' are left to their
        home for `BACKUP_DELAY` (`_claim_left`), their rooms' cursors kept where they are.
        A caller with a command left here already (their home just went away, or this replica just
        became it) has the next ones left too, so that theirs are claimed in the order sent: with
        those, when this replica is their home now."""
        if self.homes is None or (self._left.quiet() and not self.homes.shared()):
            return wanted
        assert self.state is not None and self.cursors is not None
        due = asyncio.get_running_loop().time() + BACKUP_DELAY
        answer_of = self.state.message_ids.answer
        now: list[tuple[Accepted, Freshness]] = []
        for accepted, age in wanted:
            message = accepted.message
            if message.id in self._left:
                continue  # listed twice in this batch (a re-delivery with it)
            mine = self.homes.mine(message.user_id)
            if self._left.leave(accepted, mine=mine, due=due, answer_of=lambda i: answer_of(i)[0]):
                self.cursors.keep(message.room_id, message.id)
            else:
                now.append((accepted, age))
        return now

    def _home_answered(self, answer_id: str) -> None:
        left = self._left.answered(answer_id)
        if left is None:
            return  # being claimed here (`_claim_left`), which lets it go
        self._let_go(left)
        self.metrics.left_to_home.labels(result="answered").inc()

    def _let_go(self, left: Deferred, *, seen: bool = True) -> None:
        assert self.cursors is not None
        message = left.accepted.message
        if seen and message.room_participant is True:
            self.cursors.seen(message.room_id, message.updated_at)
        self.cursors.let_go(message.room_id, message.id)

    async def _keep_homes(self) -> None:
        """Every `HEARTBEAT`: say this replica runs and read who else does (on a shared database).
        Every `HOMES_TICK`: claim the commands left to a home whose answer has not come by their
        `BACKUP_DELAY` (one statement for all of them); those claimed here run (their home died
        or is far behind), the others are the home's. Nothing is claimed here while stopping."""
        assert self.state is not None
        self.homes = Homes(self.state.owner)
        self.metrics.replicas_alive.set(1)
        loop = asyncio.get_running_loop()
        next_look = loop.time()
        while True:
            if self.state.shared and loop.time() >= next_look:
                next_look = loop.time() + HEARTBEAT
                try:
                    before = self.homes.alive
                    # Shielded: stopping waits for a look in flight before leaving the list.
                    # Only while it hears commands as they are posted: a replica whose realtime
                    # session is down (or its message stream ended) would otherwise stay the home
                    # of its callers, each of whose commands the others would claim a second late.
                    self._look = asyncio.ensure_future(self.state.replicas(ALIVE, present=self._hearing()))
                    self.homes.update(await asyncio.shield(self._look))
                    self.metrics.replicas_alive.set(len(self.homes.alive))
                    self._watch_clock()
                    if self.homes.alive != before:
                        log.info("homes.replicas", alive=len(self.homes.alive))
                except StateUnavailable as exc:
                    self._state_failed(exc)
            if len(self._left):
                await self._claim_left(loop.time())
            await asyncio.sleep(HOMES_TICK)

    def _watch_clock(self) -> None:
        """Compare this host's clock with the database server's, read by the last look. Leases are
        stored on each replica's own clock: one whose clock is behind the others' by about two
        thirds of a lease has its running commands taken over (and the stale rule compares the
        clock with Rocket.Chat's). Said once when the offset passes `CLOCK_TOLERANCE`, and once
        when it is back within it; the offset is a metric."""
        assert self.state is not None
        at = self.state.database_clock
        if at is None:
            return
        offset = at - self.clock().timestamp()
        self.metrics.clock_offset.set(offset)
        off = abs(offset) > CLOCK_TOLERANCE
        if off != self._clock_off:
            self._clock_off = off
            if off:
                log.warning(
                    "clock.out_of_sync",
                    offset_seconds=round(offset, 1),
                    hint="this host's clock differs from the database server's: leases and the stale rule"
                    " compare the hosts' clocks; synchronise them (NTP)",
                )
            else:
                log.info("clock.in_sync", offset_seconds=round(offset, 1))

    def _hearing(self) -> bool:
        """Whether this replica hears commands as they are posted (its realtime session ready, its
        message stream subscribed): only then is it anyone's home."""
        return self.realtime is not None and self.realtime.state is RealtimeState.READY and not self._deaf

    async def _claim_left(self, at: float) -> None:
        if not self._accepting:
            return
        due = self._left.due(at)  # their callers stay counted until the claim is over
        if not due:
            return
        now = self.clock()
        wanted: list[tuple[Accepted, Freshness]] = [
            (left.accepted, age)
            for left in due
            if (age := freshness(left.accepted.message.ts, now, self.settings.bot_stale_command_age))
            is not Freshness.TOO_OLD
        ]
        won: int | None = 0
        if wanted:
            assert self.services is not None
            won = await self._claim_all(wanted, "stream", now, {}, set(), arrived=self.services.rights.moment())
        if won is not None:
            self.metrics.left_to_home.labels(result="claimed").inc(won)
            self.metrics.left_to_home.labels(result="lost").inc(len(wanted) - won)
            if won:
                log.info("homes.claimed_for_home", commands=won, hint="their home replica did not claim them")
        for left in due:
            self._left.release(left)
            # Claimed (here or elsewhere): their rooms' cursors may pass them. Waiting for the
            # database (`_claim_waiting`), they are treated as any command whose claim failed:
            # their rooms stay kept until the claim is committed.
            if won is not None or left.accepted.message.id not in self._waiting_claims:
                self._let_go(left, seen=won is not None)

    def _read_ahead(
        self, wanted: list[tuple[Accepted, Freshness]], first: set[str], arrived: float
    ) -> dict[str, EarlyReads]:
        """Begin now, before their claim, the reads the fresh commands that change integrations
        need at their turn (bot/runtime/read_ahead.py): their authors' rights, and the lookup
        `_prefetch` would begin. Only for commands seen on the stream for the first time, `first`
        (re-deliveries and catch-up finds were mostly claimed already), only while this replica
        has been winning claims, and no more per caller than can start their turn at once (a
        flood is read at its own pace, in its lane, as before)."""
        if not first or not self._state_reachable or not self.read_ahead.active():
            return {}
        assert self.services is not None
        rights = self.services.rights
        loop = asyncio.get_running_loop()
        early: dict[str, EarlyReads] = {}
        slots: dict[str, int] = {}
        for accepted, age in wanted:
            message = accepted.message
            if age is not Freshness.FRESH or message.id not in first or message.id in early:
                continue
            if not self._changes(accepted, stale=False):
                continue
            free = slots.setdefault(message.user_id, self.lanes.free(message.user_id))
            if free <= 0:
                continue
            slots[message.user_id] = free - 1
            started, stamp = loop.time(), rights.stamp(message.user_id)
            # Shared only by commands of the same author that arrived with it (`RightsCache.get`);
            # cancelling it here cancels no one else's wait for that read.
            read = rights.begin_fresh(message.user_id, since=arrived)
            early[message.id] = EarlyReads(started, stamp, read, self._lookup_ahead(accepted))
        return early

    def _take(
        self,
        accepted: Accepted,
        age: Freshness,
        origin: str,
        early: EarlyReads | None = None,
        arrived: float | None = None,
    ) -> None:
        """A claimed command: into its caller's lane (`bot.runtime.fairness`), with the reads
        begun for it at admission, if any (kept for its turn), and when it arrived."""
        message = accepted.message
        if arrived is not None and self._accepting:
            self._arrivals[message.id] = arrived
        if early is not None and self._accepting:
            self.read_ahead.hold(message.id, early)
        elif early is not None:
            early.cancel()  # stopping: it will not start here
        stale = age is Freshness.STALE
        if origin == "catch-up":
            self.metrics.catchup_commands.labels(result="stale" if stale else "run").inc()
            log.info("catchup.command", message_id=message.id, room_id=message.room_id, stale=stale)
        elif stale and first_delivery(message):
            # A first delivery that already looks stale: most likely the host's clock is off.
            log.warning("command.stale_on_arrival", message_id=message.id, hint="is the host's clock synchronised?")
        self._schedule(accepted, stale=stale)

    # --- turns: which claimed command runs next (bot/runtime/fairness.py) --------------------------------

    def _schedule(self, accepted: Accepted, *, stale: bool = False, recovering: Recovering = None) -> None:
        self._running.add(accepted.message.id)  # its claim's lease is renewed until its turn ends
        self._claimed_at.setdefault(accepted.message.id, asyncio.get_running_loop().time())
        change = self._changes(accepted, stale)
        job, ready = self.lanes.submit(accepted.message.user_id, change=change)
        self._waiting[job] = (accepted, stale, recovering)
        self._start(ready)

    def _start(self, jobs: list[Job]) -> None:
        for job in jobs:
            accepted, stale, recovering = self._waiting.pop(job)
            self._spawn(self._turn(job, accepted, stale, recovering), f"command-{accepted.message.id}")

    async def _turn(self, job: Job, accepted: Accepted, stale: bool, recovering: Recovering) -> None:
        self._running.add(accepted.message.id)
        try:
            if job.overflow:
                message = accepted.message
                with contextlib.suppress(BotError):  # another bot's flood gets no answer either
                    if await self._from_ignored_bot(message) is None:
                        return
                word = accepted.invocation.command if accepted.invocation is not None else None
                await self._post(message, self._noted(message, word, busy_reply(self.lanes.queue)))
            else:
                await self._command(accepted, stale=stale, recovering=recovering)
        finally:
            self.read_ahead.drop(accepted.message.id)  # not run (answered "busy", say): its reads are not needed
            self._arrivals.pop(accepted.message.id, None)
            self._claimed_at.pop(accepted.message.id, None)
            self._running.discard(accepted.message.id)
            self._start(self.lanes.done(job))

    # --- one command ----------------------------------------------------------------------------

    async def _command(self, accepted: Accepted, *, stale: bool = False, recovering: Recovering = None) -> None:
        """Run one claimed command and answer it. `recovering`: resumed after a restart (or taken
        over from a replica), `Resume.since` when from what it said when it ran."""
        assert self.services is not None
        message = accepted.message
        # What happened to its message since it ran, when resumed from what it said then.
        since = recovering.since if recovering is not None else None
        edited = since is not None
        run = CommandRun(message.id, recovering is not None, text=message.text, author=message.user_id, edited=edited)
        command = None if stale else self._command_of(accepted)  # a stale command changes nothing
        current_command.set(run)
        self.metrics.commands_in_flight.inc()
        early: EarlyReads | None = None
        try:
            if message.id in self._troubled:
                self._troubled.discard(message.id)
                if await self._answered_not_run(message):
                    return
            author: CallerRights | None = None
            # A change of integrations reads its caller's rights fresh, with its reads ahead and
            # first lookup; one of the bot's (`quiet`) only reads them fresh.
            fresh = command is not None and command.changes_integrations
            fresh_rights = command is not None and command.reads_rights_fresh
            # Its reads begun at admission (bot/runtime/read_ahead.py), if still young enough.
            rights = self.services.rights
            early = self.read_ahead.take(message.id, lambda: rights.stamp(message.user_id))
            if fresh:  # its first lookup, read while the author's rights are
                if early is not None and early.lookup is not None:
                    self.services.integrations.adopt_prefetch(early.lookup)
                else:
                    self._prefetch(accepted)
            try:
                author = await self._from_ignored_bot(
                    message,
                    recovering=run.recovering,
                    fresh=fresh_rights,
                    read=early.rights if early is not None and fresh else None,
                )
                if author is None:
                    return
                unchecked = None
            except BotError as exc:
                unchecked = exc
            with logs.holding():  # its log lines are written once the answer is on its way
                if unchecked is None:
                    reply = await self._reply_for(accepted, stale=stale, rights=author, as_it_ran=since)
                else:  # the author could not be looked up: nothing runs, the caller is told why
                    reply = self._failed(accepted, unchecked)
                if reply.outcome == replies.TAKEN_OVER:
                    # Paused past its claim's lease, this process lost the command to another,
                    # which runs and answers it: stopped before writing, it says nothing (the
                    # book-keeping of what it did before, e.g. a bulk disable's first members, is
                    # the other's: replayed through the journal).
                    hint = "another replica took it over when this one's lease ran out; that one answers it"
                    self._unanswered(reply, "command.taken_over", message.id, hint)
                    return
                if reply.outcome == replies.STATE_UNAVAILABLE and (run.sent or run.recovering):
                    # "Nothing was changed" would be wrong: its write was sent (and may well have
                    # landed) before the database failed, by this run or, for a command resumed
                    # after a crash, by the run that died (its journal could not be read). Not
                    # answered now: its claim, no longer renewed, is taken over after its lease,
                    # and the recovery decides it with the journal (a landed write is answered as
                    # done, with its audit row; the recovery records its follow-ups).
                    hint = "written, then the state failed" if run.sent else "resumed, and the state failed"
                    self._unanswered(reply, "command.unsettled", message.id, hint)
                    return
                if await self._taken_over(message.id):
                    # Its answer may rest on what the other is changing (a `yes` whose change the
                    # other took finds none waiting): the other answers it, from what it did.
                    hint = "its lease ran out, not renewed by this replica; the one that took it over answers"
                    self._unanswered(reply, "command.taken_over", message.id, hint)
                    return
                await self._post(message, as_it_ran(reply, since) if since is not None else reply)
        finally:  # reads still held for it (it returned before taking them) are dropped by `_turn`
            if early is not None:
                early.cancel()  # a no-op once used
            self.services.integrations.drop_prefetch()
            self.metrics.commands_in_flight.dec()

    def _prefetch(self, accepted: Accepted) -> None:
        """Begin the command's first lookup while its author's rights are read fresh (see `_lookup_ahead`)."""
        assert self.services is not None
        lookup = self._lookup_ahead(accepted)
        if lookup is not None:
            self.services.integrations.adopt_prefetch(lookup)

    def _lookup_ahead(self, accepted: Accepted) -> Prefetch | None:
        """The command's first lookup, begun now (not yet the command's: `adopt_prefetch`): only
        for an author whose rights, as cached, already let them look integrations up (nothing
        is read for anyone else before their rights are known)."""
        assert self.services is not None
        invocation, message = accepted.invocation, accepted.message
        command = self._command_of(accepted)
        known = self.services.rights.known(message.user_id)
        if command is None or invocation is None or known is None or not may_list(known).allowed:
            return None
        return targets.begin_prefetch(self.services.integrations, command, invocation)

    def _changes(self, accepted: Accepted, stale: bool) -> bool:
        """Whether the command will change integrations (and so reads its caller's rights fresh)."""
        command = self._command_of(accepted)
        return command is not None and command.changes_integrations and not stale

    def _command_of(self, accepted: Accepted) -> Command | None:
        """The command its invocation names (None for none, or an unknown word)."""
        invocation = accepted.invocation
        return self.registry.find(invocation.command) if invocation is not None and invocation.command else None

    async def _from_ignored_bot(
        self,
        message: ChatMessage,
        *,
        recovering: bool = False,
        fresh: bool = False,
        read: asyncio.Future[CallerRights] | None = None,
    ) -> CallerRights | None:
        """None when the author is another bot account whose commands are ignored
        (`Intake.ignored_author`, by the author's id: the accounts BOT_ALLOWED_BOTS named at start):
        the claim is then closed as ignored (a restart does not redo it) and one line is logged.
        Otherwise the author's rights, which the command goes on with (read fresh for a command
        that changes integrations or the bot, `Command.reads_rights_fresh`: one `users.info`, not two).

        Asked after the claim, once per command and before anything runs (stale answers and usage
        errors included): it needs the author's account, which the rights every command reads carry
        (`users.info` type and roles), taken from the rights cache, which that read fills: no call
        of its own while the author's rights are cached. A failed lookup raises: the command then
        answers the error and runs nothing. A command resumed after a crash whose write had landed
        was obeyed by the process that wrote it: it is finished, not ignored. `read`: that
        fresh read, begun at the command's admission (bot/runtime/read_ahead.py), failing as it would."""
        assert self.intake is not None and self.services is not None
        since = self._arrivals.get(message.id)
        author = await (
            read if read is not None else self.services.rights.get(message.user_id, fresh=fresh, since=since)
        )
        why = self.intake.ignored_author(author)
        if why is None or (recovering and self.journal is not None and await self.journal.landed(message.id)):
            return author
        await self._finish(message.id, f"ignored: {why}", ignored=True)
        log.info(
            "command.ignored_bot",
            message_id=message.id,
            room_id=message.room_id,
            user_id=message.user_id,
            username=message.username,
            why=why,
            hint="list its username or id:<its user id> in BOT_ALLOWED_BOTS (and restart) to let it run commands",
        )
        return None

    async def _reply_for(
        self, accepted: Accepted, *, stale: bool, rights: CallerRights | None = None, as_it_ran: str | None = None
    ) -> Reply:
        assert self.dispatcher is not None
        message = accepted.message
        if stale:
            name = accepted.invocation.command if accepted.invocation is not None else None
            reply = stale_reply(message.ts, self.clock(), self.settings.bot_stale_command_age)
            return self._noted(message, name, reply)
        if accepted.invocation is not None:
            return await self.dispatcher.dispatch(message, accepted.invocation, rights=rights, as_it_ran=as_it_ran)
        assert accepted.error is not None
        return self._failed(accepted, accepted.error)

    def _failed(self, accepted: Accepted, error: BotError) -> Reply:
        """The answer to a command that failed before the dispatcher could run it."""
        if accepted.invocation is not None:
            word = accepted.invocation.command
        else:
            word = accepted.error.command if accepted.error is not None else ""
        invocation = Invocation(word, (), accepted.message.text, "prefix")
        reply = replies.for_error(error, invocation=invocation, registry=self.registry)
        return self._noted(accepted.message, word, reply)

    def _noted(self, message: ChatMessage, word: str | None, reply: Reply) -> Reply:
        """The one `command` log event and metric for an answer the dispatcher did not produce."""
        found = self.registry.find(word) if word else None
        name = found.name if found is not None else "unknown"
        logs.bind(
            correlation_id=new_correlation_id(),
            room_id=message.room_id,
            user_id=message.user_id,
            username=message.username,
            command=name,
            message_id=message.id,
        )
        logs.after_answer(log, "command", outcome=reply.outcome, seconds=0.0)
        logs.clear()
        self.metrics.observe_command(name, reply.outcome, 0.0)
        return reply

    async def _post(self, message: ChatMessage, reply: Reply) -> None:
        """Answer; right after the first attempt to post it, write the command's held log lines
        and run its deferred book-keeping (commands/followups.py); then finish the claim."""
        assert self.sender is not None and self.services is not None
        followups = self.services.followups
        # Stored at the first attempt, the answer's outcome is known: the last follow-up closes the
        # claim with its audit row, in one round trip (`commands.followups.closing`).
        closing = Closing(message.id, reply.outcome)

        async def afterwards(posted: bool) -> None:
            logs.release()
            await followups.run(reply.afterwards, then_close=closing if posted else None)

        try:
            delivery = await self.sender.deliver(message, reply, then=afterwards)
        finally:
            await followups.run(reply.afterwards)  # no-op once run; a cancelled post still records
        if delivery is Delivery.AUTH_FAILED:
            return  # the bot is stopping; the claim stays unfinished for the next start
        outcome = reply.outcome if delivery is Delivery.POSTED else f"{reply.outcome}; reply rejected"
        failed = tuple(followup for followup in reply.afterwards if followup.failed)
        if closing.done and not failed:
            return  # closed by its last follow-up, with its audit row
        if failed:
            # Its book-keeping (the audit row) is missing, the database away: done again by this
            # process once the database answers (`_settle`), its claim renewed meanwhile.
            self._unsettled[message.id] = (outcome, failed)
            log.warning(
                "command.unsettled", message_id=message.id, hint="its record is written once the database is back"
            )
            return
        await self._finish(message.id, outcome)

    async def _finish(self, message_id: str, outcome: str, *, ignored: bool = False) -> None:
        """Close the claim. When the database fails here, it is closed again by `_settle`."""
        assert self.state is not None
        try:
            await self.state.finish_message(message_id, outcome, ignored=ignored)
            self._unsettled.pop(message_id, None)
        except StateUnavailable as exc:
            self._state_failed(exc)
            self._unsettled.setdefault(message_id, ("done; closed after a state outage", ()))
            log.warning("command.unsettled", message_id=message_id, hint="closed once the database is back")

    async def _settle(self) -> None:
        """The commands answered while the database was away: their book-keeping, then their claim.
        (A process killed meanwhile leaves them to the recovery of another: their leases run out.)"""
        for message_id, (outcome, failed) in list(self._unsettled.items()):
            results = [await followup.again() for followup in failed]
            if all(results):
                await self._finish(message_id, outcome)
            elif message_id in self._unsettled:
                self._unsettled[message_id] = (
                    outcome,
                    tuple(f for f, ok in zip(failed, results, strict=True) if not ok),
                )

    async def _claim(self, wanted: Sequence[Accepted], now: datetime) -> set[str]:
        """`StateStore.claim_messages`, tried a second time when it fails: the first failure may be a
        connection the database's restart broke (the pool then replaces it), and a command must not
        be answered "not run" while another replica, whose connection was fine, runs it. Safe to
        repeat: the second try returns the claims the first one committed with its reply lost
        (`tried`), which are this replica's to run."""
        assert self.state is not None
        claims, commands = _claims_of(wanted)
        try:
            return await self.state.claim_messages(claims, now, commands=commands)
        except StateUnavailable as exc:
            log.info("state.claim_retried", error=str(exc))
            tried = {message_id: (now,) for message_id, *_ in claims}
            return await self.state.claim_messages(claims, now, tried=tried, commands=commands)

    async def _unrecorded(self, message: ChatMessage) -> None:
        """Tell the author their command was not run: its claim could not be recorded. Another
        bot's command gets no answer (its author can be looked up without the database).

        The notice takes the ids of the command's answer, so it *is* the answer: posted by every
        replica that could not claim the command, it is stored once; a pass once the database is
        back finds it and leaves the command alone (`CatchUp._answered`); and a replica that did
        claim the command in that trouble looks for it before running (`_answered_not_run`)."""
        assert self.sender is not None and self.services is not None and self.intake is not None
        with contextlib.suppress(BotError):
            author = await self.services.rights.get(message.user_id)
            if self.intake.ignored_author(author) is not None:
                return
        # Another replica whose database was reachable may have claimed and answered it. (If that
        # cannot be told, the notice is posted: at the answer's ids, it is stored only if free.)
        if await self._answered_by_bot(message):
            log.info("command.not_run_answered_elsewhere", message_id=message.id)
            return
        reply = self._noted(message, None, Reply(replies.UNRECORDED, outcome="state-unavailable"))
        await self.sender.deliver(message, reply)

    def _unanswered(self, reply: Reply, event: str, message_id: str, hint: str) -> None:
        """A command this replica does not answer (another does, or the recovery): its follow-ups
        are dropped here, and why is logged."""
        assert self.services is not None
        self.services.followups.abandon(reply.afterwards)
        log.warning(event, message_id=message_id, hint=hint)

    async def _taken_over(self, message_id: str) -> bool:
        """Whether another process holds the command's claim now, unfinished: it answers the
        command from what it does. Asked only when its lease may have run out: this process's
        renewals lapsed (paused, cut off from the database) since it was claimed, or are late now.
        When the claim cannot be looked up, it is answered as before. One the other finished is
        answered too: it may have closed it on the "can't record commands" notice of a replica cut
        off from the database (`Recovery._answered`), which this answer writes over (outbound.py),
        while a real answer already at its ids keeps it from being stored a second time."""
        now = asyncio.get_running_loop().time()
        claimed = self._claimed_at.get(message_id)
        lapsed = self._lapsed_at is not None and (claimed is None or self._lapsed_at >= claimed)
        late = self._renewed_at is not None and now - self._renewed_at > self.settings.bot_claim_lease / 2
        if not (lapsed or late) or not self._state_reachable:
            return False  # (the database away: the look-up would only wait for it to fail)
        assert self.state is not None
        try:
            owner = await self.state.claim_owner(message_id, open_only=True)
        except StateUnavailable:
            return False
        return owner is not None and owner != self.state.owner

    def _in_trouble(self, *, since: float) -> bool:
        """Whether a claim begun at `since` (loop time) may have raced a replica that could not
        claim: it took more than a moment, or this replica met an outage lately."""
        now = asyncio.get_running_loop().time()
        recent = self._last_outage is not None and now - self._last_outage < TROUBLE_MEMORY
        return now - since > TROUBLE_CLAIM or recent

    async def _answered_not_run(self, message: ChatMessage) -> bool:
        """A command claimed in trouble: already answered "not run" by a replica that could not
        claim it (the bot's own message at an id of its answer)? Then it is closed, not run.
        When that cannot be looked up (Rocket.Chat erring), it is not run now either: its claim,
        no longer renewed, runs out and the recovery decides it once Rocket.Chat answers."""
        answered = await self._answered_by_bot(message)
        if answered is None:
            log.warning(
                "command.deferred",
                message_id=message.id,
                room_id=message.room_id,
                hint="its answer could not be looked up; the recovery decides it once Rocket.Chat answers",
            )
            return True
        if not answered:
            return False
        with contextlib.suppress(StateUnavailable):  # else a take-over closes it the same way
            await self._finish(message.id, "not run: answered 'cannot record' during a state outage")
        log.info("command.not_run_after_outage", message_id=message.id, room_id=message.room_id)
        return True

    async def _answered_by_bot(self, message: ChatMessage) -> bool | None:
        """Whether the bot's own message stands at an id of the command's answer (looked up);
        None when that cannot be told (Rocket.Chat erring)."""
        assert self.rest is not None and self.state is not None
        chain = self.state.message_ids.answer(message.id)
        try:
            return await own_at(self.rest, chain, room_id=message.room_id, thread_id=message.thread_id)
        except UpstreamError:
            return None

    # --- the state database: leases, take-over, outages ---------------------------------------

    def _state_failed(self, exc: StateUnavailable) -> None:
        if isinstance(exc, StateBusy):
            # The database answers; a row stayed locked by a transaction left open (another
            # replica stopped mid-batch: bot/state/postgres.py). What failed is tried again at its
            # own pace (its next round, its settling), never at once: no outage, readiness kept.
            log.warning("state.busy", error=str(exc), hint="another replica may be stalled mid-batch")
            return
        self._last_outage = asyncio.get_running_loop().time()
        if self._state_reachable:
            log.error("state.unavailable", error=str(exc), hint="commands are answered 'not run' until it is back")
        self._state_reachable = False
        self.metrics.state_up.set(0)

    def _state_worked(self) -> None:
        if not self._state_reachable:
            self._state_reachable = True
            self.metrics.state_up.set(1)
            log.info("state.available_again")
            if self.catchup is not None:
                self.catchup.again()  # commands seen meanwhile: run or answered "not run" once

    async def _keep_claims(self) -> None:
        """Every third of the lease: renew the claims of this process's commands still running,
        check the database (readiness, recovery after an outage), and take over expired claims
        (a replica that died; a command of this process that ended without settling its claim,
        the database failing meanwhile), deciding them like a restart does (`bot.runtime.recovery`)."""
        assert self.state is not None
        interval = self.settings.bot_claim_lease / 3
        loop = asyncio.get_running_loop()
        self._renewed_at = loop.time()
        while True:
            # During an outage, every second: commands wait for their claim until it works. A claim
            # failing meanwhile (a blip the periodic check did not see) wakes the keeper early.
            if not self._state_reachable or self._waiting_claims:
                await asyncio.sleep(STATE_RETRY)
            else:
                self._claim_failed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._claim_failed.wait(), interval)
                if self._claim_failed.is_set():
                    await asyncio.sleep(STATE_RETRY)
            if self._waiting_claims and self._accepting:
                await self._claim_waiting()
            try:
                # Claims taken over and not decided yet are this process's too: renewed while a
                # sweep decides them, so that nobody else takes them over (and decides them again).
                deciding = self.recovery.remaining if self.recovery is not None else ()
                await self.state.renew_claims(self.clock(), self._running | self._unsettled.keys() | set(deciding))
                renewed, self._renewed_at = self._renewed_at, loop.time()
                if renewed is not None and self._renewed_at - renewed > self.settings.bot_claim_lease / 2:
                    self._lapsed_at = self._renewed_at  # a lease of this process's may have run out meanwhile
                await self.state.ping()
                # Expired: another replica's that died, or this process's own that ended unsettled
                # (none while stopping: what this process would take, it could not run).
                orphans = (
                    await self.state.take_over(self.clock(), expired_only=True, settled=RESTART_SETTLE)
                    if self._accepting
                    else []
                )
            except StateUnavailable as exc:
                self._state_failed(exc)
                continue
            self._state_worked()
            if self._unsettled:
                self._settle_apart()
            horizon = self.clock() - CATCHUP_HORIZON
            for message_id in [m for m, at in self._not_run.items() if at < horizon]:
                del self._not_run[message_id]  # older than any pass looks back
            if orphans:
                self.metrics.takeovers.inc(len(orphans))
                log.info("claims.taken_over", commands=len(orphans))
            if self.recovery is not None and (orphans or self.recovery.remaining):
                self.recovery.add(orphans)
                self._sweep_taken()

    def _settle_apart(self) -> None:
        """Settle the commands answered while the database was away (`_settle`) in a task of their
        own, one pass at a time: their book-keeping may ask Rocket.Chat (a change recorded after a
        failed timer look-up reads its integration under its lock, `commands.changes.record_resumed`,
        which may wait out its time-outs and retries, or the lock, for 40 s and more), and the keeper
        must go on renewing this process's claims meanwhile, or their leases run out and another
        replica runs those commands a second time. It goes on through a drain, as the keeper does."""
        settling = self._settle_task
        if settling is None or settling.done():
            self._settle_task = asyncio.create_task(self._settle(), name="settle", context=contextvars.Context())

    def _sweep_taken(self) -> None:
        """Decide the claims taken over in a task of their own, one sweep at a time: deciding asks
        Rocket.Chat (a call or more per command, each of which may wait out its time-outs and
        retries for 40 s and more), and the keeper must go on renewing this process's own claims
        meanwhile, or their leases run out and another replica runs them a second time. An error
        other than the ones a sweep expects ends the keeper, as it did when it swept itself."""
        sweep = self._sweep_task
        if not self._accepting or (sweep is not None and not sweep.done()):
            return  # stopping: what it would decide, this process could not run (others take it over)
        if sweep is not None and not sweep.cancelled() and sweep.exception() is not None:
            raise sweep.exception()  # type: ignore[misc]
        self._sweep_task = asyncio.create_task(self._recover_taken(), name="recovery", context=contextvars.Context())

    async def _claim_waiting(self) -> None:
        """Claim the commands whose claim failed, now. Those claimed run (late), unless they were
        answered "not run" meanwhile (their claim is then closed); those another replica claimed
        are its. Still failing: each fresh one waiting longer than NOTICE_AFTER is answered "not
        run" (once) and keeps waiting, so that once the database is back it is closed, not run."""
        assert self.state is not None
        items = list(self._waiting_claims.values())
        now, since = self.clock(), asyncio.get_running_loop().time()
        claims, commands = _claims_of([a for a, *_ in items])
        try:
            claimed = await self.state.claim_messages(
                claims, now, tried=self._tried_claims([a.message.id for a, *_ in items], now), commands=commands
            )
        except StateUnavailable as exc:
            self._state_failed(exc)
            for accepted, age, _, failed_at in items:
                message = accepted.message
                self._claims_tried.setdefault(message.id, []).append(now)
                if age is Freshness.FRESH and since - failed_at >= NOTICE_AFTER and message.id not in self._not_run:
                    self._not_run[message.id] = now
                    self._spawn(self._unrecorded(message), f"unrecorded-{message.id}")
            return
        self._state_worked()
        assert self.cursors is not None
        for accepted, _, origin, _ in items:
            message = accepted.message
            del self._waiting_claims[message.id]
            self._claims_tried.pop(message.id, None)
            self.cursors.let_go(message.room_id, message.id)
            if message.id not in claimed:
                self.metrics.duplicates.labels(origin=origin).inc()
            elif message.id in self._not_run:
                await self._finish(message.id, "not run: answered 'cannot record' during a state outage")
            else:
                self._troubled.add(message.id)  # another replica may have given up on it
                self._take(accepted, freshness(message.ts, now, self.settings.bot_stale_command_age), origin)

    def _tried_claims(self, message_ids: list[str], now: datetime) -> dict[str, list[datetime]]:
        """The moments of these waiting commands' own failed claims within the last lease (those
        older are forgotten). A claim committed unanswered longer ago than that, never renewed, has
        run out: it is taken over (by this process too, whose recovery then decides it); returned as
        this command's too, it would run twice."""
        oldest = now - timedelta(seconds=self.settings.bot_claim_lease)
        tried: dict[str, list[datetime]] = {}
        for message_id in message_ids:
            moments = [moment for moment in self._claims_tried.get(message_id, ()) if moment > oldest]
            self._claims_tried[message_id] = moments
            tried[message_id] = moments
        return tried

    async def _recover_taken(self) -> None:
        """Decide the claims taken over while running (between catch-up passes)."""
        if self.rest is None or not self._accepting:
            return
        try:
            await self._recover(await member_rooms(self.rest))
        except (UpstreamError, StateUnavailable) as exc:
            log.warning("recovery.later", error=str(exc))  # the rest: the next tick or catch-up pass

    # --- crash recovery (before each catch-up pass, until every orphan is decided) ---------------

    async def _recover(self, rooms: Mapping[str, Room]) -> None:
        if self.recovery is not None and self.recovery.remaining and self._accepting:
            await self.recovery.sweep(rooms, self._act)

    async def _act(self, decision: Decision) -> None:
        assert self.services is not None
        if isinstance(decision, Close):
            await self._finish(decision.message_id, decision.outcome, ignored=decision.ignored)
            self.metrics.recovered.labels(result="closed").inc()
        elif isinstance(decision, Resume):
            self.metrics.recovered.labels(result="resumed").inc()
            self._schedule(decision.accepted, recovering=decision)
        elif isinstance(decision, Interrupted):
            self.metrics.recovered.labels(result="interrupted").inc()
            self._spawn(self._interrupted(decision), "interrupted")

    async def _interrupted(self, decision: Interrupted) -> None:
        """Tell the caller the command was not run again; another bot's command gets no answer. (An
        author who cannot be looked up is told too: the answer runs nothing.)"""
        assert self.services is not None
        self._running.add(decision.message.id)
        try:
            with contextlib.suppress(BotError):
                if await self._from_ignored_bot(decision.message) is None:
                    return
            reply = interrupted_reply(decision.reason, self.services.prefix)
            await self._post(decision.message, self._noted(decision.message, None, reply))
        finally:
            self._running.discard(decision.message.id)

    # --- health, housekeeping -------------------------------------------------------------------

    def probe(self) -> Probe:
        state = self.realtime.state if self.realtime is not None else None
        return Probe(
            realtime=state.value if state is not None else "starting",
            logged_in=state in (RealtimeState.SUBSCRIBING, RealtimeState.READY),
            subscriptions_ready=state is RealtimeState.READY,
            message_stream=not self._deaf,
            state_db_open=self._state_open and self._state_reachable,
            permissions_loaded=self.services is not None and self.services.rights.table.loaded,
            stopping=not self._accepting,
        )

    async def _maintain(self) -> None:
        """Store cursors every few seconds; prune claims older than CLAIM_RETENTION every hour."""
        assert self.state is not None and self.cursors is not None
        loop = asyncio.get_running_loop()
        next_prune = loop.time()
        while True:
            try:
                await self.cursors.flush()
                if loop.time() >= next_prune:
                    pruned = await self.state.prune_messages(self.clock() - CLAIM_RETENTION)
                    await self.state.prune_intents()
                    await self.state.confirmations.prune(self.clock())
                    await self.state.floods.prune(self.clock() - FLOOD_ROWS_KEPT)
                    log.info("state.pruned", claims=pruned)
                    next_prune = loop.time() + PRUNE_INTERVAL
            except StateUnavailable as exc:
                self._state_failed(exc)  # cursors stay buffered; tried again next time
            await asyncio.sleep(CURSOR_FLUSH_INTERVAL)

    # --- shutdown -------------------------------------------------------------------------------

    async def _leave(self, look: asyncio.Future[list[str]] | None) -> None:
        assert self.state is not None
        if look is not None:
            await asyncio.gather(look, return_exceptions=True)
        await self.state.leave()

    async def shutdown(self, background: list[asyncio.Task[None]] | None = None) -> None:
        self._accepting = False
        self.lanes.close()
        self.read_ahead.clear()  # the reads of commands that will not start here
        if self._waiting:
            log.info("bot.not_started", waiting=len(self._waiting))  # claimed: resumed at the next start
        # The claims' keeper goes on through the drain: the commands still running keep their
        # claims (another replica would take them over once their lease ran out).
        keeper = [task for task in background or () if task.get_name() == CLAIMS_TASK]
        others = [task for task in background or () if task not in keeper]
        if self._sweep_task is not None:
            others.append(self._sweep_task)  # what it would take over, this process could not run
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        leaving: asyncio.Task[None] | None = None
        if self.state is not None and self._state_open and self.state.shared:
            # The others stop leaving this replica's callers' commands to it (at their next look).
            # Only once its last look (`_keep_homes`) is over: one in flight would put it back.
            leaving = asyncio.create_task(self._leave(self._look), name="leave")
        if self._tasks:
            log.info("bot.draining", in_flight=len(self._tasks))
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.settings.bot_shutdown_grace)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("bot.drain_timeout", cancelled=len(pending))
                await asyncio.gather(*pending, return_exceptions=True)
        if self._settle_task is not None:
            keeper.append(self._settle_task)  # renewed by the keeper while it settles, until now
        for task in keeper:
            task.cancel()
        await asyncio.gather(*keeper, return_exceptions=True)
        if leaving is not None:
            await asyncio.gather(leaving, return_exceptions=True)
        if self.incident is not None:
            await self.incident.aclose()
        if self.realtime is not None:
            await self.realtime.close()
        if self.cursors is not None and self._state_open:
            with contextlib.suppress(StateUnavailable):
                await self.cursors.flush()
                if self.state is not None and self.state.shared:
                    await self.state.release_claims()  # another replica takes them over at once
        if self.http is not None:
            await self.http.stop()
        if self.rest is not None:
            await self.rest.aclose()
        if self.state is not None and self._state_open:
            self._state_open = False
            await self.state.close()
        if self._owner is not None:
            self._owner.release()
            self._owner = None
        log.info("bot.stopped")


async def _freeze_when_ready(bot: Bot) -> None:
    """Once started, move everything built so far (modules, models, clients: it lives as long as
    the process) out of the garbage collector's reach. Its full passes walked all of it and held
    up a command for ~50 ms every few hundred commands (bench/: gen-2 pause 47.6 -> 0.8 ms).
    Done here, for the process, not in `Bot`, which tests also run inside their own process.
    No collection first: it would hold the loop (~30 ms) just as the first commands and the
    catch-up pass start, to reclaim the little start-up garbage that freezing keeps."""
    await bot.ready.wait()
    gc.freeze()


async def _main(settings: Settings) -> int:
    bot = Bot(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, bot.stop)
    freezer = asyncio.create_task(_freeze_when_ready(bot), name="gc-freeze")
    try:
        await bot.run()
    except AuthFailed as exc:
        log.error(
            "bot.auth_failed",
            endpoint=exc.endpoint,
            hint="Rocket.Chat refused the bot's credentials; check ROCKETCHAT_AUTH_TOKEN/ROCKETCHAT_PASSWORD",
        )
        return 1
    except ConfigError as exc:
        log.error("bot.config_error", error=str(exc))
        return 2
    except UpstreamError as exc:
        log.error("bot.start_failed", error=str(exc))
        return 1
    finally:
        freezer.cancel()
    return 0


def main(settings: Settings) -> int:
    logs.configure_logging(settings.bot_log_level, settings.bot_log_format)
    return asyncio.run(_main(settings))
