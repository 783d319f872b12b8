"""The README's settings table names every setting the bot reads, and nothing else (bot/config.py
says to keep the two in step; this keeps them so)."""

from __future__ import annotations

import re
from pathlib import Path

from bot.config import Settings
from bot.ops.healthcheck import HealthcheckSettings

README = Path(__file__).resolve().parents[2] / "README.md"


def settings_table() -> list[str]:
    """The variables of the table under `### Settings` (a row may name two: `A` + `B`)."""
    text = README.read_text()
    section = text[text.index("\n### Settings\n") :]
    section = section[: section.index("\n## ", 1)]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])]


def test_every_setting_is_in_the_readme_table_once() -> None:
    names = settings_table()
    assert len(names) == len(set(names)), names
    assert set(names) == {field.upper() for field in Settings.model_fields}


def test_the_healthcheck_reads_only_documented_settings() -> None:
    assert {field.upper() for field in HealthcheckSettings.model_fields} <= set(settings_table())
