"""The real command layer (parser → dispatcher → set/confirm → REST client) on the sandbox REST app.

No sockets and no bot process: the sandbox's REST routes are served through
`httpx.ASGITransport`, the bot's `RestClient`, `RightsCache`, `IntegrationService` and an
in-memory `StateStore` are the real ones, and the clock is a settable value so confirmations
can expire without waiting. Every REST call the bot makes is recorded by endpoint.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bot.clock import SystemClock
from bot.config import Settings
from bot.errors import StateUnavailable, UsageError
from bot.incident.toolkit import IncidentToolkit
from bot.integrations.authz import RightsCache
from bot.integrations.service import IntegrationService
from bot.rocketchat.messages import ChatMessage
from bot.rocketchat.rest import RequestRecord, RestClient
from bot.runtime.journal import CommandRun, JournaledIntegrationService, current_command
from bot.state.store import StateStore
from bot.state.timer_states import TimedDisable
from commands import changes, replies
from commands.context import BotIdentity, Services
from commands.followups import Followups
from commands.parser import Invocation, extract_invocation
from commands.registry import Dispatcher
from commands.reply import Reply
from commands.table import build_registry
from sandbox.config import SandboxConfig
from sandbox.control import SandboxControl
from sandbox.rest import create_rest_app
from sandbox.seed import seed_demo
from sandbox.store import Store

BOT = "integrations-bot"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Killed(BaseException):
    """Stands for a kill -9 of the process at that point (`Harness.run_killed_at_record`)."""


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class Harness:
    store: Store
    control: SandboxControl
    seeded: dict[str, Any]
    services: Services
    dispatcher: Dispatcher
    clock: Clock
    calls: list[RequestRecord] = field(default_factory=list)

    def room(self, name: str) -> str:
        return str(self.seeded["rooms"][name])

    def dm(self, user: str) -> str:
        first, second = sorted([user, BOT])
        return self.room(f"dm:{first}:{second}")

    def writes(self) -> int:
        return sum(1 for call in self.calls if call.endpoint == "integrations.update")

    def doc(self, integration_id: str) -> dict[str, Any]:
        return self.control.integration(integration_id)

    def chat_message(self, user: str, room: str, text: str, *, direct: bool = False) -> ChatMessage:
        """`text` typed by `user` in the room `room` (a seeded room name, or a room id)."""
        creds = self.seeded["users"][user]
        return ChatMessage(
            id=secrets.token_hex(8),
            room_id=self.seeded["rooms"].get(room, room),
            text=text,
            ts=self.clock.now,
            updated_at=self.clock.now,
            user_id=creds["userId"],
            username=user,
            room_type="d" if direct else "c",
        )

    def message(self, user: str, room: str, text: str) -> tuple[ChatMessage, Invocation]:
        """A command message and its invocation, for `dispatcher.dispatch` (no follow-ups run)."""
        invocation = extract_invocation(text, bot_username=BOT, is_direct=False)
        assert invocation is not None, text
        return self.chat_message(user, room, text), invocation

    async def say(self, user: str, room: str, text: str, *, direct: bool = False) -> Reply:
        """The answer to `text` typed by `user` in `room`, its book-keeping done as the runtime does."""
        message = self.chat_message(user, room, text, direct=direct)
        try:
            invocation = extract_invocation(text, bot_username=BOT, is_direct=direct)
        except UsageError as exc:  # answered like the runtime does (an unbalanced quote)
            fallback = Invocation(exc.command, (), text, "prefix")
            return replies.for_error(exc, invocation=fallback, registry=self.dispatcher.registry)
        assert invocation is not None, text
        reply = await self.dispatcher.dispatch(message, invocation)
        await self.services.followups.run(reply.afterwards)  # what the runtime does once it answered
        return reply

    def with_incident_toolkit(self) -> IncidentToolkit:
        """Timed disables, history rooms and the noisy window for the commands (no scheduler runs:
        nothing re-enables by itself), on the harness's clock."""
        services = self.services
        services.incident = IncidentToolkit(
            settings=services.settings,
            rest=services.rest,
            integrations=services.integrations,
            rights=services.rights,
            state=services.state,
            bot_user_id=services.identity.user_id,
            bot_username=services.identity.username,
            clock=SystemClock(self.clock),
        )
        return services.incident

    async def run_claimed(self, message: ChatMessage, invocation: Invocation, *, resumed: bool = False) -> Reply:
        """Run a command as the runtime runs a claimed one, its write journal in charge: the first
        run claims it first; `resumed`, the run of a restart (or of a replica that took it over)."""
        if not resumed:
            now = self.clock()
            assert await self.services.state.claim_message(message.id, message.room_id, now, now)
        token = current_command.set(CommandRun(message.id, recovering=resumed))
        try:
            return await self.dispatcher.dispatch(message, invocation)
        finally:
            current_command.reset(token)

    async def run_killed_at_record(
        self, monkeypatch: pytest.MonkeyPatch, message: ChatMessage, invocation: Invocation, *, at: int = 1
    ) -> Reply | None:
        """Run a command claimed, as `run_claimed`, until its `at`-th audit row, where the process
        dies (kill -9): None when that came before the answer (a `set` or `undo` records under its
        lock); its answer when the row was book-keeping after it (an `enable`: its follow-ups are
        then never run). A restart resumes it with `run_claimed(…, resumed=True)`."""
        real = changes.record
        calls: list[int] = []

        async def killed(*args: Any, **kwargs: Any) -> int:
            calls.append(1)
            if len(calls) == at:
                raise Killed
            return await real(*args, **kwargs)

        monkeypatch.setattr(changes, "record", killed)
        try:
            reply = await self.run_claimed(message, invocation)
        except Killed:
            return None
        finally:
            monkeypatch.setattr(changes, "record", real)
        self.services.followups.abandon(reply.afterwards)  # the process died before running them
        return reply

    def first_timer_lookup_fails(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        """The incident toolkit's (made if there is none yet) first timer look-up fails as a state
        database stumbling; the later ones work. Returns the integration ids looked up, in order."""
        timers = (self.services.incident or self.with_incident_toolkit()).timers
        real = timers.pending_for
        calls: list[str] = []

        async def flaky(integration_id: str) -> TimedDisable | None:
            calls.append(integration_id)
            if len(calls) == 1:
                raise StateUnavailable("test database", "connection lost")
            return await real(integration_id)

        monkeypatch.setattr(timers, "pending_for", flaky)
        return calls

    def replica(self, state: StateStore) -> Harness:
        """Another bot process on the same workspace (the same REST client and clock) with its own
        state store, on the database of this one's for a replica. Closing it is closing `state`."""
        services = dataclasses.replace(
            self.services,
            state=state,
            integrations=IntegrationService(self.services.rest, locks=state.locks),
            followups=Followups(),
            incident=None,
        )
        return dataclasses.replace(self, services=services, dispatcher=Dispatcher(self.dispatcher.registry, services))

    async def close(self) -> None:
        if self.services.incident is not None:
            await self.services.incident.aclose()
        await self.services.rest.aclose()
        await self.services.state.close()


async def open_journaled_harness() -> Harness:
    """The harness with the write journal in charge of its writes (as the runtime runs commands,
    bot/runtime/journal.py) and the incident toolkit: for commands interrupted and resumed."""
    harness = await open_harness()
    services = harness.services
    services.integrations = JournaledIntegrationService(services.rest, services.state, harness.clock)
    harness.with_incident_toolkit()
    return harness


async def open_harness(
    *, update_mode: str = "8.x", confirm_timeout: timedelta = timedelta(minutes=2), state: StateStore | None = None
) -> Harness:
    """The harness; its state is `state` (closed with it) or a new in-memory store."""
    store = Store()
    seeded = seed_demo(store)
    config = SandboxConfig(update_mode="legacy" if update_mode == "legacy" else "8.x")
    control = SandboxControl(store, config=config)
    control.create_user("hookbot", roles=["user"], name="Hook Bot")
    seeded["users"]["hookbot"] = {"userId": control.user("hookbot")["_id"]}
    app = create_rest_app(store, config)
    bot = seeded["users"][BOT]
    calls: list[RequestRecord] = []
    rest = RestClient(
        "http://sandbox.test",
        user_id=bot["userId"],
        auth_token=bot["authToken"],
        transport=httpx.ASGITransport(app=app),
        on_request=calls.append,
    )
    rights = RightsCache(rest, ttl=0)
    await rights.load_permissions()
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        rocketchat_url="http://sandbox.test",
        rocketchat_user_id=bot["userId"],
        rocketchat_auth_token=bot["authToken"],
        bot_confirm_timeout=confirm_timeout,
    )
    clock = Clock()
    registry = build_registry()
    if state is None:
        state = await StateStore.open(":memory:")
    services = Services(
        rest=rest,
        integrations=IntegrationService(rest, locks=state.locks),
        rights=rights,
        state=state,
        settings=settings,
        identity=BotIdentity(bot["userId"], BOT),
        clock=clock,
        registry=registry,
    )
    return Harness(store, control, seeded, services, Dispatcher(registry, services), clock, calls)
