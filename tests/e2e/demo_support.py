"""Running `integrations-bot demo --script` as a user would: the installed script, a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("integrations-bot")


def run_demo(
    tmp_path: Path, lines: list[str], *, timeout: float = 15, name: str = "demo-script.txt"
) -> subprocess.CompletedProcess[str]:
    """Write `lines` as a script, run the demo on it (no ROCKETCHAT_/BOT_ settings of ours leak in)."""
    script = tmp_path / name
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return subprocess.run(
        [str(SCRIPT), "demo", "--script", str(script), "--timeout", f"{timeout:g}"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith(("ROCKETCHAT_", "BOT_"))},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def transcript_blocks(transcript: str) -> list[str]:
    """The transcript's messages, each with its indented continuation lines."""
    blocks: list[str] = []
    for line in transcript.splitlines():
        if line.startswith(" ") and blocks:
            blocks[-1] += "\n" + line
        else:
            blocks.append(line)
    return blocks
