"""`integrations-bot check`: can the bot work with these settings? One line per check, then a verdict.

The checks run in the order an operator would fix things: the server answers, the credentials
work, the bot account has the rights it needs, the accounts BOT_ALLOWED_BOTS lists exist, the
server lets users reach the bot, the realtime
API accepts the bot, the state database (file or PostgreSQL) can be used. A failure that makes
the later server checks meaningless (unreachable server, refused credentials) skips them; the state
database is checked whatever happens, so one run shows every local problem too.

Marks: ✔ fine, ! works but with a limitation (the line says which), ✘ the bot cannot work until
this is fixed (the line says what to do). Exit status 0 when there is no ✘, else 1.

Nothing here prints a secret: the REST client scrubs server texts of the tokens it sent, the
realtime client never puts credentials in its errors, and the lines below only name variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import sqlite3
import sys
from dataclasses import dataclass
from typing import Final, TextIO

from bot.config import Settings
from bot.errors import AuthFailed, ConfigError, ServerRejected, StateUnavailable, Unavailable, UpstreamError
from bot.integrations.authz import (
    MANAGE_INCOMING,
    MANAGE_OUTGOING,
    MANAGE_OWN_INCOMING,
    MANAGE_OWN_OUTGOING,
    PermissionTable,
)
from bot.logs import configure_logging
from bot.rocketchat.models import UserInfo
from bot.rocketchat.realtime import (
    Credentials,
    PasswordCredentials,
    RealtimeClient,
    ResumeCredentials,
    websocket_url,
)
from bot.rocketchat.rest import RestClient
from bot.runtime.allowed_bots import resolve_allowed_bots
from bot.state.store import StateStore

SLASH_SETTING: Final = "Message_AllowUnrecognizedSlashCommand"
MESSAGES_STREAM: Final = ("stream-room-messages", "__my_messages__")
GRANT_HINT: Final = "give the bot user a role that has it (Administration → Permissions)"

# permission -> what the bot cannot do without it
REQUIRED: Final[tuple[tuple[str, str], ...]] = (
    (MANAGE_INCOMING, "change incoming integrations"),
    (MANAGE_OUTGOING, "change outgoing integrations"),
    ("view-full-other-user-info", "read the roles of the people who send commands"),
)
VIEW_CHANNELS: Final = "view-other-user-channels"
RATE_LIMIT_BYPASS: Final = "api-bypass-rate-limit"


class Mark(enum.Enum):
    OK = "✔"
    WARN = "!"
    FAIL = "✘"


@dataclass(frozen=True)
class Finding:
    mark: Mark
    text: str


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]

    @property
    def problems(self) -> int:
        return sum(1 for f in self.findings if f.mark is Mark.FAIL)

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.mark is Mark.WARN)

    @property
    def ready(self) -> bool:
        return self.problems == 0

    def verdict(self) -> str:
        if not self.ready:
            plural = "s" if self.problems > 1 else ""
            return f"NOT READY: {self.problems} problem{plural} to fix (the ✘ lines say how)."
        if self.warnings:
            plural = "s" if self.warnings > 1 else ""
            return f"READY, with {self.warnings} warning{plural} (the ! lines say what they limit)."
        return "READY: the bot can work with these settings."

    def render(self) -> str:
        lines = [f"{f.mark.value} {f.text}" for f in self.findings]
        return "\n".join([*lines, self.verdict()]) + "\n"


# --- the checks ---------------------------------------------------------------------------------


class _Checks:
    """Runs the checks in order, collecting findings; owns the REST client for the run."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.findings: list[Finding] = []
        self.rest = self._client(authenticated=True)
        self.me: UserInfo | None = None

    def _client(self, *, authenticated: bool) -> RestClient:
        settings = self.settings
        token_pair = settings.uses_token and authenticated
        return RestClient(
            settings.rest_url,
            user_id=settings.rocketchat_user_id if token_pair else None,
            auth_token=settings.rocketchat_auth_token if token_pair else None,
            timeout=settings.bot_request_timeout,
            # One retry rides over a blip; an operator waiting at a terminal wants an answer soon.
            max_attempts=2,
        )

    def add(self, mark: Mark, text: str) -> None:
        self.findings.append(Finding(mark, text))

    async def run(self) -> Report:
        try:
            if await self.server() and await self.credentials():
                await self.rights()
                await self.allowed_bots()
                await self.slash_setting()
                await self.realtime()
        finally:
            with contextlib.suppress(UpstreamError):
                if not self.settings.uses_token and self.rest.credentials is not None:
                    await self.rest.logout()  # drop the login token this check created
            await self.rest.aclose()
        await self.state_db()
        return Report(tuple(self.findings))

    async def server(self) -> bool:
        url = self.settings.rest_url
        try:
            # Anonymously: a refused token must read as "credentials refused", not "unreachable".
            async with self._client(authenticated=False) as anonymous:
                info = await anonymous.info()
        except ServerRejected:
            # It answered, just not /api/info (hidden behind a proxy, or a very old server).
            self.add(Mark.OK, f"server reachable at {url} (Rocket.Chat version unknown)")
            return True
        except UpstreamError as exc:
            self.add(
                Mark.FAIL,
                f"cannot reach Rocket.Chat at {url} ({_reason(exc)}): "
                "check ROCKETCHAT_URL and that the server is running and reachable from here",
            )
            return False
        self.add(Mark.OK, f"server reachable at {url} (Rocket.Chat {info.version or 'version unknown'})")
        return True

    async def credentials(self) -> bool:
        settings = self.settings
        if settings.uses_token:
            kind = "ROCKETCHAT_USER_ID + ROCKETCHAT_AUTH_TOKEN"
            fix = "create a new personal access token for the bot user and set both variables"
        else:
            kind = "ROCKETCHAT_USERNAME + ROCKETCHAT_PASSWORD"
            fix = "check both variables (an account with two-factor login needs a personal access token instead)"
        try:
            if not settings.uses_token:
                assert settings.rocketchat_username is not None and settings.rocketchat_password is not None
                await self.rest.login_password(
                    settings.rocketchat_username, settings.rocketchat_password.get_secret_value()
                )
            me = await self.rest.me()
        except AuthFailed:
            self.add(Mark.FAIL, f"credentials refused: the server did not accept {kind} (HTTP 401); {fix}")
            return False
        except ServerRejected as exc:
            self.add(Mark.FAIL, f"credentials refused: the server did not accept {kind} ({exc.error}); {fix}")
            return False
        except UpstreamError as exc:
            self.add(Mark.FAIL, f"could not log in ({_reason(exc)}): the server failed; try again or check its logs")
            return False
        self.me = me
        roles = ", ".join(me.roles or ()) or "none"
        who = f"@{me.username}" if me.username else f"user id {me.id}"
        self.add(Mark.OK, f"credentials accepted ({_kind_of(settings)}): the bot is {who}, roles: {roles}")
        return True

    async def rights(self) -> None:
        assert self.me is not None
        if self.me.roles is None:
            self.add(Mark.FAIL, "the server did not say which roles the bot has; its rights cannot be checked")
            return
        try:
            snapshot = await self.rest.permissions_list_all()
        except UpstreamError as exc:
            self.add(Mark.FAIL, f"could not read the permission table (permissions.listAll: {_reason(exc)})")
            return
        table = PermissionTable()
        table.replace(snapshot)
        held = table.permissions_of(self.me.roles)

        for permission, purpose in REQUIRED:
            if permission in held:
                self.add(Mark.OK, f"permission {permission} (to {purpose})")
            else:
                self.add(Mark.FAIL, f"permission {permission} is missing, needed to {purpose}: {GRANT_HINT}")

        if VIEW_CHANNELS in held:
            self.add(Mark.OK, f"permission {VIEW_CHANNELS} (to apply Rocket.Chat's channel-membership rule)")
        else:
            self.add(
                Mark.WARN,
                f'permission {VIEW_CHANNELS} is missing: callers without both the "all" and the "own" '
                "permission of a kind fall under Rocket.Chat's channel-membership rule, which the bot cannot "
                "check without it, so it refuses them with an explanation; grant it to apply the rule",
            )

        missing_own = [p for p in (MANAGE_OWN_INCOMING, MANAGE_OWN_OUTGOING) if p not in held]
        if not missing_own:
            self.add(
                Mark.OK,
                f"permissions {MANAGE_OWN_INCOMING} and {MANAGE_OWN_OUTGOING} "
                "(the bot's own updates skip the channel-membership rule)",
            )
        else:
            names = " and ".join(missing_own)
            verb = "are" if len(missing_own) > 1 else "is"
            self.add(
                Mark.WARN,
                f'{names} {verb} missing: without both the "all" and the "own" permission of a kind, the server '
                "makes the bot a member of every channel of an integration it updates, or refuses the update; "
                "grant them or add the bot to those rooms",
            )

        if RATE_LIMIT_BYPASS in held:
            self.add(Mark.OK, f"permission {RATE_LIMIT_BYPASS} (no REST rate limit)")
        else:
            self.add(
                Mark.WARN,
                f"permission {RATE_LIMIT_BYPASS} is missing: the server allows the bot only 10 calls per minute "
                "per endpoint, so busy moments make commands wait; the bot role has it by default",
            )

    async def allowed_bots(self) -> None:
        """BOT_ALLOWED_BOTS as the bot resolves it when it starts (bot/runtime/allowed_bots.py):
        the accounts it allows, and each entry that names no account (and so allows nobody)."""
        settings = self.settings
        if not settings.bot_allowed_bots:
            return
        try:
            allowed = await resolve_allowed_bots(
                self.rest, names=settings.allowed_bot_names, ids=settings.allowed_bot_ids
            )
        except UpstreamError as exc:
            self.add(Mark.WARN, f"could not look up the accounts of BOT_ALLOWED_BOTS ({_reason(exc)})")
            return
        by_id = [f"id:{i}" for i in sorted(settings.allowed_bot_ids) if f"id:{i}" not in allowed.missing]
        accounts = [f"{name} (user id {user_id})" for name, user_id in allowed.names.items()] + by_id
        if accounts:
            self.add(
                Mark.OK,
                f"BOT_ALLOWED_BOTS allows {', '.join(accounts)}: matched by user id, so a rename does not "
                "change who is allowed (names are resolved when the bot starts)",
            )
        for entry, why in allowed.missing.items():
            if entry.startswith("id:"):
                fix = "check the id (the account's user id, not its username)"
            else:
                fix = "names are resolved when the bot starts: create the account before starting it, or fix the entry"
            self.add(Mark.WARN, f"BOT_ALLOWED_BOTS: {entry} names no account ({why}), so it allows nobody: {fix}")

    async def slash_setting(self) -> None:
        slash = [p for p in self.settings.prefixes if p.startswith("/")]
        if not slash:
            return  # no slash prefix configured: the setting does not matter to this bot
        others = [p for p in self.settings.prefixes if not p.startswith("/")]
        bot = f"@{self.me.username}" if self.me is not None and self.me.username else "@<bot>"
        alternatives = ", ".join([*(f"`{p} ...`" for p in others), "a direct message", f"`{bot} ...`"])
        try:
            values = await self.rest.settings_public([SLASH_SETTING])
        except UpstreamError as exc:
            self.add(Mark.WARN, f"could not read {SLASH_SETTING} ({_reason(exc)}); if it is off, {slash[0]} fails")
            return
        if values.get(SLASH_SETTING) is True:
            self.add(Mark.OK, f"{SLASH_SETTING} is on (the web client sends `{slash[0]} ...` to the bot)")
            return
        state = "off" if SLASH_SETTING in values else "not readable (treated as off)"
        self.add(
            Mark.WARN,
            f"{SLASH_SETTING} is {state}: the web client then never sends `{slash[0]} ...` to anyone "
            f'(it shows "No such command"); {alternatives} work anyway. '
            "An admin can turn it on under Administration → Settings → Message",
        )

    async def realtime(self) -> None:
        settings = self.settings
        url = websocket_url(settings.rocketchat_url)
        timeout = settings.bot_request_timeout
        client = RealtimeClient(url, _realtime_credentials(settings), connect_timeout=timeout, call_timeout=timeout)
        subscription = client.subscribe(*MESSAGES_STREAM, {"useCollection": False, "args": []})
        runner = asyncio.create_task(client.run(), name="check-realtime")
        try:
            await client.wait_ready(timeout)
        except AuthFailed as exc:
            self.add(
                Mark.FAIL,
                f"realtime API at {url} refused the bot's login ({_reason(exc)}): "
                "the REST login worked, so check that the server's websocket and DDP login are not blocked",
            )
            return
        except (Unavailable, ConfigError) as exc:
            self.add(
                Mark.FAIL,
                f"realtime API at {url} not usable ({_reason(exc)}): "
                "make sure a reverse proxy in front of Rocket.Chat passes websocket upgrades on /websocket",
            )
            return
        finally:
            await client.close()
            with contextlib.suppress(AuthFailed, ConfigError):
                await runner
        if subscription not in client.subscriptions:
            self.add(
                Mark.FAIL,
                f"realtime API at {url} refused the bot's message subscription, so the bot would hear nothing: "
                "check the server's logs",
            )
            return
        self.add(Mark.OK, f"realtime API at {url}: logged in and subscribed to the bot's messages")

    async def state_db(self) -> None:
        if self.settings.bot_state_url is not None:
            await self._shared_state()
            return
        path = self.settings.bot_state_db
        try:
            store = await StateStore.open(path)
        except ConfigError as exc:
            self.add(Mark.FAIL, f"{exc}: set BOT_STATE_DB to a writable file path")
            return
        except (sqlite3.Error, OSError) as exc:
            self.add(
                Mark.FAIL,
                f"BOT_STATE_DB: {path} cannot be used ({type(exc).__name__}: {exc}); "
                "point BOT_STATE_DB to a new file or move the broken one aside",
            )
            return
        try:
            version = await store.schema_version()
        finally:
            await store.close()
        self.add(
            Mark.OK,
            f"state database {path.resolve()} opened (schema version {version}); one bot process per file: "
            "set BOT_STATE_URL to run several replicas",
        )

    async def _shared_state(self) -> None:
        """PostgreSQL (BOT_STATE_URL): reachable, migrated, and how many commands are unfinished."""
        assert self.settings.bot_state_url is not None
        url = self.settings.bot_state_url.get_secret_value()
        try:
            store = await StateStore.connect(url, connect_timeout=self.settings.bot_request_timeout)
        except (StateUnavailable, ConfigError) as exc:
            self.add(Mark.FAIL, f"BOT_STATE_URL: {exc}: check the URL, the password and that the server is up")
            return
        try:
            version = await store.schema_version()
            unfinished = len(await store.unfinished_messages())
        except StateUnavailable as exc:
            self.add(Mark.FAIL, f"BOT_STATE_URL: {exc}")
            return
        finally:
            await store.close()
        self.add(
            Mark.OK,
            f"state database {store.describe()} reachable (schema version {version}, shared by every replica; "
            f"{unfinished} unfinished command(s))",
        )


def _kind_of(settings: Settings) -> str:
    return "token pair" if settings.uses_token else "username and password"


def _realtime_credentials(settings: Settings) -> Credentials:
    if settings.uses_token:
        assert settings.rocketchat_auth_token is not None
        return ResumeCredentials(settings.rocketchat_auth_token)  # a personal access token is a resume token
    assert settings.rocketchat_username is not None and settings.rocketchat_password is not None
    login = settings.rocketchat_username
    if "@" in login:  # Rocket.Chat usernames cannot hold "@": this is an e-mail address
        return PasswordCredentials(settings.rocketchat_password, email=login)
    return PasswordCredentials(settings.rocketchat_password, username=login)


def _reason(exc: BaseException) -> str:
    """The error's own sentence without the `endpoint:` prefix the clients put first."""
    text = str(exc)
    endpoint = getattr(exc, "endpoint", None)
    if isinstance(endpoint, str):
        text = text.removeprefix(f"{endpoint}: ")
    return text or type(exc).__name__


async def run_checks(settings: Settings) -> Report:
    return await _Checks(settings).run()


def main(settings: Settings, *, out: TextIO | None = None) -> int:
    """Print the readiness report; 0 when the bot can work, 1 when not."""
    stream = out if out is not None else sys.stdout
    # The report is the output; library log lines would only interleave with it. DEBUG shows all.
    configure_logging("DEBUG" if settings.bot_log_level == "DEBUG" else "CRITICAL", settings.bot_log_format)
    report = asyncio.run(run_checks(settings))
    stream.write(report.render())
    stream.flush()
    return 0 if report.ready else 1
