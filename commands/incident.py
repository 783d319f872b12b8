"""What the incident commands share: the toolkit, the permission check, follow-up buttons.

Buttons post a normal command as the clicking user (contract §6.3), so whoever taps one goes
through the same checks as if they had typed it. They name the integration by id (names can be
ambiguous or contain spaces) and use the bang prefix (`!integration`), which every client sends
as a plain message.
"""

from __future__ import annotations

from datetime import timedelta

from bot.errors import ConfigError, PermissionDenied
from bot.incident.toolkit import IncidentToolkit
from bot.integrations.authz import CallerRights, visible_in_list
from bot.rocketchat.models import Integration
from bot.state.store import AuditRecord
from bot.text import human_duration, quote_name, single_line, truncate
from commands.registry import CommandContext
from commands.reply import Button

BUTTON_EXTENSION = timedelta(hours=1)


def toolkit(ctx: CommandContext) -> IncidentToolkit:
    found = ctx.services.incident
    if found is None:
        raise ConfigError("timed disables, history and noisy need the incident toolkit, which is not set up")
    return found


async def require_change(ctx: CommandContext, rights: CallerRights, integration: Integration) -> None:
    """The caller may change this integration as Rocket.Chat would allow an update (the same
    rule `enable`/`disable` apply through `IntegrationService`), or `PermissionDenied`."""
    decision = await ctx.services.integrations.may_write(rights, integration)
    if not decision.allowed:
        raise PermissionDenied(
            f"change {quote_name(integration.name)}", decision.missing, detail=decision.reason or None
        )


def may_see(rights: CallerRights, document: dict[str, object] | None) -> bool:
    """Whether the caller's own `list` would show the integration this document describes."""
    return document is not None and "_id" in document and visible_in_list(rights, document)


def record_document(record: AuditRecord) -> dict[str, object] | None:
    return record.after if record.after is not None else record.before


def command(ctx: CommandContext, *words: str) -> str:
    return " ".join((ctx.services.prefix, *words))


def reenable_button(ctx: CommandContext, integration_id: str, text: str = "Re-enable now") -> Button:
    return Button(text, command(ctx, "enable", integration_id))


def extend_button(ctx: CommandContext, integration_id: str, by: timedelta = BUTTON_EXTENSION) -> Button:
    amount = human_duration(by).replace(" ", "")
    return Button(f"Extend {human_duration(by)}", command(ctx, "extend", integration_id, amount))


def disable_for_button(ctx: CommandContext, integration: Integration, span: timedelta, reason: str) -> Button:
    amount = human_duration(span).replace(" ", "")
    return Button(
        f"Disable {truncate(single_line(integration.name), 30)} for {human_duration(span)}",
        command(ctx, "disable", integration.id, "for", amount, "--", reason),
    )
