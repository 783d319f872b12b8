"""Webhook traffic in the demo workspace: the burst it starts with, and `:flood NAME [N]`; and the
outgoing webhooks' recent calls, some of them failed, which `failing` reports.

The README's incident flow begins with `noisy`, which counts what integrations posted in a room
lately; a workspace where no webhook ever posted would answer "No integration posted here". So
the demo starts with traffic (`STARTUP_TRAFFIC`: `Grafana` flooding #alerts, a few builds in #ops)
and `:flood` makes any incoming integration post more. Posts go through the sandbox's control API
as the webhook would post them (its post-as user, alias and emoji, `bot: {i: <id>}`), into the
integration's own channel; a disabled integration posts nothing, as its hook URL then answers
503 on Rocket.Chat. That is the point of the demo: disable it and the flood stops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

import httpx

from bot.demo.script_lines import FLOOD_DEFAULT, FLOOD_MAX
from bot.errors import BotError
from bot.normalize import name_key
from sandbox.control import ControlError
from sandbox.errors import MeteorError

# (integration name, messages) posted before the bot starts; the README's `noisy 60` shows them.
STARTUP_TRAFFIC: Final[tuple[tuple[str, int], ...]] = (("Grafana", 38), ("Jenkins builds", 4))

# Calls of outgoing webhooks recorded before the bot starts (`failing` shows the failed ones):
# (integration name, minutes ago, HTTP status or None for no answer, body or error code).
STARTUP_CALLS: Final[tuple[tuple[str, int, int | None, str], ...]] = (
    ("Deploy announcer", 42, 200, '{"id": "deploy-1841"}'),
    ("Deploy announcer", 31, 200, '{"id": "deploy-1842"}'),
    ("Deploy announcer", 17, 502, "Bad Gateway"),
    ("Deploy announcer", 9, 200, '{"id": "deploy-1843"}'),
    ("Deploy announcer", 4, 500, "deploy queue unavailable"),
    ("Guggy", 25, None, "ENOTFOUND"),
    ("Guggy", 12, None, "ENOTFOUND"),
    ("Guggy", 3, None, "ENOTFOUND"),
)

_TEXTS: Final[Mapping[str, tuple[str, ...]]] = {
    "grafana": (
        "[FIRING:1] HighErrorRate api-gateway: 5xx rate {n}.2% (threshold 2%)",
        "[FIRING:1] DiskAlmostFull db-{n}: 93% used",
        "[RESOLVED] HighErrorRate api-gateway",
        "[FIRING:2] LatencyP99 checkout: {n}40 ms",
    ),
    "jenkins builds": ("Build #14{n} of platform/main: SUCCESS", "Build #14{n} of platform/web: FAILURE"),
}


__all__ = [
    "FLOOD_DEFAULT",
    "FLOOD_MAX",
    "STARTUP_CALLS",
    "STARTUP_TRAFFIC",
    "DemoTrafficError",
    "Flooded",
    "flood",
    "startup_calls",
    "startup_traffic",
]


class DemoTrafficError(BotError):
    """`:flood` cannot run as asked; one line for the person at the terminal."""


class WebhookPoster(Protocol):
    """The two control-API calls traffic needs (a `SandboxClient`, or `SandboxControl` in tests)."""

    def integrations(self) -> list[dict[str, Any]]: ...

    def post_webhook_message(self, integration_id: str, text: str, *, room: str | None = None) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Flooded:
    """What one flood did: `posted` messages into `room`; `disabled`: the server refused (the rest of) them."""

    name: str
    room: str
    posted: int
    disabled: bool

    def describe(self) -> str:
        if self.disabled and not self.posted:
            return (
                f"`{self.name}` is disabled: Rocket.Chat refuses its posts (503 Service Unavailable), "
                "so it posted nothing"
            )
        plural = "" if self.posted == 1 else "s"
        cut = " before it was disabled (503 Service Unavailable)" if self.disabled else ""
        return f"`{self.name}` posted {self.posted} message{plural} into {self.room}{cut}"


def message_text(name: str, index: int) -> str:
    """The `index`-th message an integration posts: alert-like for Grafana, builds for Jenkins."""
    texts = _TEXTS.get(name.casefold(), ("{name}: event {i}",))
    return texts[index % len(texts)].format(n=index % 9 + 1, i=index + 1, name=name)


def find_incoming(documents: Sequence[Mapping[str, Any]], wanted: str) -> Mapping[str, Any]:
    """The one incoming integration named `wanted` or with that id; names compared as the bot
    compares them (`name_key`: case, spacing and look-alike letters folded)."""
    key = name_key(wanted)
    incoming = [d for d in documents if d.get("type") == "webhook-incoming"]
    by_id = [d for d in incoming if str(d.get("_id")) == wanted]
    found = by_id or [d for d in incoming if name_key(str(d.get("name") or "")) == key]
    if not found:
        others = [d for d in documents if name_key(str(d.get("name") or "")) == key]
        if others:
            raise DemoTrafficError(f"`{wanted}` is an outgoing webhook: only incoming webhooks post into a room")
        raise DemoTrafficError(f"no incoming integration named `{wanted}`; :integrations lists them")
    if len(found) > 1:
        ids = ", ".join(str(d["_id"]) for d in found)
        raise DemoTrafficError(f"{len(found)} incoming integrations are named `{wanted}`; use an id: {ids}")
    return found[0]


def flood(control: WebhookPoster, wanted: str, count: int) -> Flooded:
    """Make the incoming integration `wanted` post `count` messages into its channel."""
    try:
        document = find_incoming(control.integrations(), wanted)
    except (ControlError, httpx.HTTPError) as exc:
        raise DemoTrafficError(f"cannot reach the sandbox: {exc}") from None
    channels = document.get("channel") or []
    name = str(document.get("name") or document["_id"])
    room = str(channels[0]) if channels else "(no channel)"
    if document.get("enabled") is not True:
        return Flooded(name, room, 0, disabled=True)
    posted = 0
    try:
        for index in range(count):
            control.post_webhook_message(str(document["_id"]), message_text(name, index))
            posted += 1
    except MeteorError as exc:
        if exc.reason == "Service Unavailable":  # disabled meanwhile: the rest is refused
            return Flooded(name, room, posted, disabled=True)
        raise DemoTrafficError(f"the sandbox refused the post: {exc.message}") from None
    except (ControlError, httpx.HTTPError) as exc:
        raise DemoTrafficError(f"cannot reach the sandbox: {exc}") from None
    return Flooded(name, room, posted, disabled=False)


def startup_traffic(control: WebhookPoster) -> list[Flooded]:
    """The burst the demo starts with (`STARTUP_TRAFFIC`)."""
    return [flood(control, name, count) for name, count in STARTUP_TRAFFIC]


class CallRecorder(Protocol):
    """The control-API calls `startup_calls` needs (a `SandboxClient`, or `SandboxControl` in tests):
    only the arguments it passes (`SandboxControl.record_outgoing_call` describes them all)."""

    def integrations(self) -> list[dict[str, Any]]: ...

    def record_outgoing_call(
        self,
        integration_id: str,
        *,
        status: int | None = ...,
        body: str = ...,
        error_code: str | None = ...,
        at: str | None = ...,
    ) -> dict[str, Any]: ...


def startup_calls(control: CallRecorder, *, now: datetime | None = None) -> int:
    """Record `STARTUP_CALLS` as the outgoing webhooks' history, as Rocket.Chat records a call
    that finished (sandbox/integration_history.py); returns how many calls failed."""
    current = now or datetime.now(UTC)
    try:
        outgoing = [d for d in control.integrations() if d.get("type") == "webhook-outgoing"]
        failed = 0
        for name, minutes, status, detail in STARTUP_CALLS:
            key = name_key(name)
            for document in (d for d in outgoing if name_key(str(d.get("name") or "")) == key):
                at = (current - timedelta(minutes=minutes)).isoformat()
                if status is None:
                    control.record_outgoing_call(str(document["_id"]), error_code=detail, at=at)
                else:
                    control.record_outgoing_call(str(document["_id"]), status=status, body=detail, at=at)
                failed += status is None or not 200 <= status < 300
    except (ControlError, MeteorError, httpx.HTTPError) as exc:
        raise DemoTrafficError(f"cannot record the outgoing webhooks' calls: {exc}") from None
    return failed
