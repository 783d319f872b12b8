"""`integrations-bot demo --script`: the real installed script runs the sandbox and the real bot process.

The assertions lean on what the workspace holds (names, which integration got disabled) rather
than on the bot's exact wording, which belongs to the command modules and their own tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from demo_support import run_demo, transcript_blocks

pytestmark = pytest.mark.e2e


def answers(transcript: str, room: str) -> list[str]:
    """The bot's messages in a room, each with its indented continuation lines."""
    blocks = transcript_blocks(transcript)
    bot = re.compile(rf"\[{re.escape(room)}\] (↳ )?integrations-bot: ")
    return [block for block in blocks if bot.match(block)]


def test_a_demo_script_talks_to_the_real_bot(tmp_path: Path) -> None:
    result = run_demo(
        tmp_path,
        [
            ":room general",
            "!integration help",
            ":user admin",
            "!integration list",
            ":dm",
            "show Guggy",
            ":room general",
            "/integration disable incoming Guggy",
            ":thread",
            "!integration show incoming Guggy",
            ":integrations",
        ],
    )
    transcript = result.stdout
    assert result.returncode == 0, transcript + result.stderr
    assert "!!" not in transcript

    general = answers(transcript, "#general")
    assert len(general) == 4, transcript  # help, list, disable, show (in the thread)
    help_answer, list_answer, disable_answer, show_answer = general
    assert "help" in help_answer
    for name in ("Guggy", "Jenkins builds", "Alertmanager", "Deploy announcer"):
        assert name in list_answer
    assert "Guggy" in disable_answer
    assert show_answer.startswith("[#general] ↳ integrations-bot: ")
    dm = answers(transcript, "@integrations-bot")
    assert len(dm) == 1 and "Guggy" in dm[0]

    table = [line.split() for line in transcript.splitlines() if line.startswith("  Guggy ")]
    assert sorted(row[1:3] for row in table) == [["incoming", "no"], ["outgoing", "yes"]]  # it really changed

    assert "the bot is ready" in result.stderr
    state_dir = re.search(r"log: (\S+)/bot\.log", result.stderr)
    assert state_dir and not Path(state_dir.group(1)).exists()


def test_an_unanswered_line_fails_the_demo_run(tmp_path: Path) -> None:
    # Plain chat in a room is not addressed to the bot, so it stays silent: the script must say so.
    result = run_demo(tmp_path, ["good morning everyone", ":say no answer needed"], timeout=2)
    assert result.returncode == 1
    assert "[#general] admin: good morning everyone" in result.stdout
    assert "!! no answer from integrations-bot within 2 s" in result.stdout
