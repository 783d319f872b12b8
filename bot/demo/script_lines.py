"""What one line typed into the demo chat (or read from a demo script) asks for. Pure: no I/O.

Meta-commands start with `:` because every other first character must reach the chat as typed:
`/integration disable Guggy`, `!integration list`, `@integrations-bot help`, `help`. A line that
merely starts with `::` is sent with one colon fewer, for the rare message that must begin with
a colon. In scripts, blank lines and lines starting with `#` are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bot.normalize import normalize


@dataclass(frozen=True)
class Send:
    """Post `text` as the current user. `expect_answer`: a script waits for the bot's answer."""

    text: str
    expect_answer: bool = True


@dataclass(frozen=True)
class SwitchUser:
    username: str


@dataclass(frozen=True)
class SwitchRoom:
    """`:room NAME`; `name` None means the direct-message room with the bot (`:dm`)."""

    name: str | None


@dataclass(frozen=True)
class Thread:
    """`:thread` (on: continue in the thread of the last command sent here) or `:thread off`."""

    on: bool


@dataclass(frozen=True)
class Show:
    """`:users`, `:rooms`, `:integrations` or `:help`."""

    what: str


@dataclass(frozen=True)
class Flood:
    """`:flood NAME [N]`: the incoming webhook NAME (or id) posts N messages into its channel."""

    name: str
    count: int


@dataclass(frozen=True)
class Quit:
    pass


@dataclass(frozen=True)
class Skip:
    """Nothing to do (a blank line, or a comment in a script)."""


@dataclass(frozen=True)
class Invalid:
    """A meta-command that cannot be run; `problem` says why and what to type instead."""

    problem: str


Action = Send | SwitchUser | SwitchRoom | Thread | Show | Flood | Quit | Skip | Invalid

FLOOD_DEFAULT: Final = 20
FLOOD_MAX: Final = 200

# name -> (argument hint or "", description); the order is the order of the help text
META_COMMANDS: Final[dict[str, tuple[str, str]]] = {
    "user": ("NAME", "type as another user (:users lists them)"),
    "room": ("NAME", "go to another room (:rooms lists them)"),
    "dm": ("", "go to your direct-message room with the bot"),
    "thread": ("[off]", "continue in the thread of the last command you sent here; `off` to leave it"),
    "say": ("TEXT", "send TEXT without waiting for an answer (for scripts)"),
    "flood": ("NAME [N]", f"make the incoming webhook NAME post N messages (default {FLOOD_DEFAULT}) into its channel"),
    "users": ("", "list the users you can type as"),
    "rooms": ("", "list the rooms"),
    "integrations": ("", "list the integrations: name, type, enabled, id"),
    "help": ("", "show this help"),
    "quit": ("", "stop the bot and the sandbox and leave (also Ctrl-D, Ctrl-C)"),
}
_ALIASES: Final = {"q": "quit", "exit": "quit", "u": "user", "r": "room", "t": "thread", "?": "help", "h": "help"}


def parse_line(line: str, *, script: bool = False) -> Action:
    """Turn one input line into an action. `script`: also skip `#` comment lines."""
    text = line.rstrip("\r\n")
    stripped = text.strip()
    if not stripped or (script and stripped.startswith("#")):
        return Skip()
    if stripped.startswith("::"):
        return Send(stripped[1:])
    if not stripped.startswith(":"):
        return Send(text.strip())
    word, _, rest = stripped[1:].partition(" ")
    name = _ALIASES.get(word.lower(), word.lower())
    argument = rest.strip()
    if name not in META_COMMANDS:
        return Invalid(
            f"unknown meta-command :{word} (type :help; to send a line starting with ':', begin it with '::')"
        )
    match name:
        case "user":
            return (
                SwitchUser(argument.removeprefix("@")) if argument else Invalid(":user needs a name, e.g. :user admin")
            )
        case "room":
            if not argument:
                return Invalid(":room needs a name, e.g. :room general (or :dm for the bot's DM)")
            return SwitchRoom(argument.removeprefix("#"))
        case "dm":
            return SwitchRoom(None)
        case "thread":
            if argument.lower() in ("", "on"):
                return Thread(True)
            if argument.lower() == "off":
                return Thread(False)
            return Invalid(":thread takes no argument or `off`")
        case "say":
            return Send(argument, expect_answer=False) if argument else Invalid(":say needs the text to send")
        case "flood":
            return _flood(argument)
        case "quit":
            return Quit()
        case _:
            return Show(name) if not argument else Invalid(f":{name} takes no argument")


def _flood(argument: str) -> Action:
    argument = normalize(argument)  # a phone's curly quotes, as for chat commands
    name, _, last = argument.rpartition(" ")
    if not last.isdigit() or not name.strip():
        name, last = argument, ""
    name = name.strip().strip("\"'`").strip()
    if not name:
        return Invalid(f":flood needs an incoming webhook's name, e.g. :flood Grafana {FLOOD_DEFAULT}")
    count = int(last) if last else FLOOD_DEFAULT
    if not 1 <= count <= FLOOD_MAX:
        return Invalid(f":flood posts 1 to {FLOOD_MAX} messages, e.g. :flood {name} {FLOOD_DEFAULT}")
    return Flood(name, count)


def help_lines() -> list[str]:
    width = max(len(f":{name} {hint}".rstrip()) for name, (hint, _) in META_COMMANDS.items())
    return [f"  {f':{name} {hint}'.rstrip():<{width}}  {text}" for name, (hint, text) in META_COMMANDS.items()]
