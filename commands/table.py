"""The table of commands: the one place a new command is registered."""

from __future__ import annotations

from commands import confirm, disable, enable, extend, failing, history, noisy, show, snoozed, undo
from commands import help as help_command
from commands import list as list_command
from commands import set as set_command
from commands.registry import Command, Registry

COMMANDS: tuple[Command, ...] = (
    enable.COMMAND,
    disable.COMMAND,
    list_command.COMMAND,
    show.COMMAND,
    help_command.COMMAND,
    set_command.COMMAND,
    confirm.COMMAND,
    snoozed.COMMAND,
    extend.COMMAND,
    history.COMMAND,
    undo.COMMAND,
    noisy.COMMAND,
    failing.COMMAND,
)


def build_registry() -> Registry:
    return Registry(COMMANDS)
