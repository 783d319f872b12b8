"""Every example in README.md and in `help` runs on the demo workspace as written.

A newcomer's first minutes are `make demo` and copying the examples. An example that answers "2
integrations are named `Guggy`", "I can't find …" or an unknown field teaches them that the
project's own documentation is wrong. So this runs each one through the real `integrations-bot
demo --script` (the seeded sandbox and the real bot process), in the order a reader meets them:

* README.md: every `` `!integration …` `` / `` `/integration …` `` outside code blocks (as admin),
  and every line of a transcript block that starts with a seeded user's name (as that user);
* `help`: every example of every command, as `help <command>` shows it (as admin).

Two examples are refusals on purpose (`EXPECTED_REFUSALS`): the deliberate duplicate name and
the mention-safety example. The incident transcript of the README is the output of
`docs/incident-demo.txt`; the last test keeps the two in step.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from demo_support import run_demo, transcript_blocks

from commands.table import COMMANDS

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
INCIDENT_SCRIPT = ROOT / "docs" / "incident-demo.txt"
BULK_SCRIPT = ROOT / "docs" / "bulk-demo.txt"
USERS = ("admin", "alice", "owen")
ROOM = "ops"
# Answers that say the example did not work: the reply's first characters or words in it.
FAILURE_STARTS = ("⚠️", "⛔", "🚨", "⏳", "💥", "!!")
FAILURE_WORDS = ("can't find", "I don't know", "are named", "is named", "not a field", "no timed disable")
# example -> what its answer must say instead (it shows a refusal on purpose)
EXPECTED_REFUSALS = {
    "/integration disable Guggy": "are named",  # the demo's one deliberate duplicate name
    "/integration disable @all": "`@all`",  # mention safety: echoed as code, nobody is paged
}


@dataclass(frozen=True)
class Example:
    user: str
    text: str
    where: str


@dataclass
class Exchange:
    example: Example
    answers: list[str]


def readme_examples() -> list[Example]:
    text = README.read_text(encoding="utf-8")
    found: list[Example] = []
    prose: list[str] = []
    in_block = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("```"):
            in_block = not in_block
            continue
        if in_block:
            match = re.match(rf"^({'|'.join(USERS)})\s+([!/]integration\s.*)$", line)
            if match:
                found.append(Example(match[1], match[2].strip(), f"README.md:{number}"))
        else:
            prose.append(f"{number}\x00{line}")
    # Code spans may wrap across lines in prose: join, then find them.
    joined = "\n".join(prose)
    for match in re.finditer(r"`([!/]integration\s[^`]*)`", joined):
        span = " ".join(re.sub(r"^\d+\x00", "", part) for part in match[1].split("\n"))
        if "…" in span or "<" in span:  # a pattern (`!integration …`), not an example
            continue
        number = joined[: match.start()].rsplit("\n", 1)[-1].split("\x00")[0]
        found.append(Example("admin", span.strip(), f"README.md:{number}"))
    found.sort(key=lambda e: int(e.where.split(":")[1]))
    # The first time a reader meets an example is the one that counts (a second `yes` would find
    # nothing left to confirm, as it would for them).
    return [e for i, e in enumerate(found) if (e.user, e.text) not in {(f.user, f.text) for f in found[:i]}]


def help_examples() -> list[Example]:
    return [
        Example("admin", f"!integration {example}", f"help {command.name}")
        for command in COMMANDS
        for example in command.examples
    ]


def demo_transcript(tmp_path: Path, lines: list[str], name: str = "script.txt") -> str:
    result = run_demo(tmp_path, lines, name=name)
    assert "the bot is ready" in result.stderr, result.stderr
    return result.stdout


def run_examples(tmp_path: Path, examples: list[Example]) -> list[Exchange]:
    """Post each example as its user in #ops; pair each with the bot's answers that followed it."""
    lines = [f":room {ROOM}"]
    user = "admin"
    for example in examples:
        if example.user != user:
            lines.append(f":user {example.user}")
            user = example.user
        lines.append(example.text)
    transcript = demo_transcript(tmp_path, lines)
    blocks = transcript_blocks(transcript)
    exchanges: list[Exchange] = []
    pending = iter(examples)
    said = re.compile(rf"^\[#{ROOM}\] ({'|'.join(USERS)}): (.*)$", re.DOTALL)
    for block in blocks:
        if (match := said.match(block)) is not None:
            example = next(pending)
            assert match[2] == example.text and match[1] == example.user, (block, example)
            exchanges.append(Exchange(example, []))
        elif block.startswith((f"[#{ROOM}] integrations-bot: ", "!! ")) and exchanges:
            exchanges[-1].answers.append(block.removeprefix(f"[#{ROOM}] integrations-bot: "))
    assert len(exchanges) == len(examples), transcript
    return exchanges


def problems(exchanges: list[Exchange]) -> list[str]:
    found: list[str] = []
    for exchange in exchanges:
        example, answer = exchange.example, "\n".join(exchange.answers)
        label = f"{example.where}: {example.user} `{example.text}`"
        if not exchange.answers:
            found.append(f"{label}: no answer")
            continue
        expected = EXPECTED_REFUSALS.get(example.text)
        if expected is not None:
            if expected not in answer:
                found.append(f"{label}: expected {expected!r} in the answer, got:\n{answer}")
            continue
        if answer.startswith(FAILURE_STARTS) or any(word in answer for word in FAILURE_WORDS):
            found.append(f"{label}: answered\n{answer}")
    return found


def test_every_readme_example_runs_on_the_demo_as_written(tmp_path: Path) -> None:
    examples = readme_examples()
    assert len(examples) >= 20, examples  # the extraction finds the README's examples
    assert {e.text for e in examples} >= set(EXPECTED_REFUSALS)
    found = problems(run_examples(tmp_path, examples))
    assert not found, "\n\n".join(found)


def test_every_help_example_runs_on_the_demo_as_written(tmp_path: Path) -> None:
    examples = help_examples()
    assert {e.where for e in examples} == {f"help {c.name}" for c in COMMANDS}  # every command has examples
    found = problems(run_examples(tmp_path, examples))
    assert not found, "\n\n".join(found)


def _normalised(transcript: str) -> list[str]:
    """What varies between runs (ids, clock times, durations, zero-width spaces) made equal."""
    text = transcript.replace("\u200b", "")
    text = re.sub(r"\b[0-9a-f]{24}\b", "<id>", text)
    text = re.sub(r"with id `([^`]+)`", "with id <room>", text)  # a room's id differs in every run
    text = re.sub(r"`#[23456789A-HJ-NP-Za-km-z]{17}`", "`#<room>`", text)  # also as a channel entry
    text = re.sub(r"\bconfirm [A-Z0-9]{4}\b", "confirm <code>", text)  # so does a confirmation code
    # A time on another day carries its date ("until 7 Dec 00:32 UTC"): run late in the evening,
    # the demo's 30 min + 1 h cross midnight, and the README's transcript was made earlier.
    text = re.sub(r"\b\d{1,2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (?=\d{1,2}:\d{2} UTC)", "", text)
    text = re.sub(r"\b\d{1,2}:\d{2} UTC\b", "<time>", text)
    text = re.sub(r"\d+", "N", text)
    return [line.rstrip() for line in text.strip().splitlines()]


def readme_incident_transcript(after: str = "A real flow, as it looks in the demo") -> str:
    """The README's transcript block that follows the text `after`."""
    text = README.read_text(encoding="utf-8")
    start = text.index("```\n", text.index(after)) + 4
    return text[start : text.index("```\n", start)]


def test_the_readme_incident_flow_is_what_the_demo_prints(tmp_path: Path) -> None:
    script = [line for line in INCIDENT_SCRIPT.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    fresh = demo_transcript(tmp_path, script, "incident.txt")
    documented = readme_incident_transcript()
    assert "noisy" in documented and "Grafana" in documented
    diff = "\n".join(
        difflib.unified_diff(_normalised(documented), _normalised(fresh), "README.md", "demo", lineterm="")
    )
    assert not diff, f"README's incident flow differs from the demo's output; the demo printed:\n{fresh}\n{diff}"


def test_the_readme_bulk_disable_flow_is_what_the_demo_prints(tmp_path: Path) -> None:
    script = [line for line in BULK_SCRIPT.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    fresh = demo_transcript(tmp_path, script, "bulk.txt")
    documented = readme_incident_transcript("integrations-bot demo --script docs/bulk-demo.txt")
    assert "disable all in #alerts" in documented and "Switched off 2 of 2" in documented
    diff = "\n".join(
        difflib.unified_diff(_normalised(documented), _normalised(fresh), "README.md", "demo", lineterm="")
    )
    assert not diff, f"README's bulk disable flow differs from the demo's output; the demo printed:\n{fresh}\n{diff}"


def readme_failing_transcript() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("```\n", text.index("### Failing outgoing webhooks")) + 4
    return text[start : text.index("```\n", start)]


def test_the_readme_failing_transcript_is_what_the_demo_prints(tmp_path: Path) -> None:
    documented = readme_failing_transcript()
    typed = [
        line.split(": ", 1)[1] if line.startswith("[#") else line
        for line in documented.splitlines()
        if line.startswith((":", "[#ops] admin: ", "[#ops] owen: "))
    ]
    assert typed == [":room ops", "!integration failing", ":user owen", "!integration failing"], typed
    fresh = demo_transcript(tmp_path, typed, "failing.txt")
    diff = "\n".join(
        difflib.unified_diff(_normalised(documented), _normalised(fresh), "README.md", "demo", lineterm="")
    )
    assert not diff, f"README's `failing` transcript differs from the demo's output; the demo printed:\n{fresh}\n{diff}"


FLOOD_SCRIPT = ROOT / "docs" / "flood-demo.txt"


def _without_webhook_lines(lines: list[str]) -> list[str]:
    """The webhook's own messages (and the README's `…` for them) left out, the rest in sorted
    order: where the bot's notice falls among them, and whether before or after the next line of
    the script is typed on a busy machine, depends on timing, not on the bot; what it says does."""
    kept = [line for line in lines if line != "…" and not re.match(r"^\[#\w+\] Grafana \(integration\): ", line)]
    # "until midnight, in 46 min 56 s" or "in 2 h": how long until midnight depends on the hour.
    return sorted(re.sub(r"in N (?:d|h|min|s)(?: N (?:d|h|min|s))?\.", "in <duration>.", line) for line in kept)


def test_the_readme_flood_guard_transcript_is_what_the_demo_prints(tmp_path: Path) -> None:
    script = [line for line in FLOOD_SCRIPT.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    fresh = demo_transcript(tmp_path, script, "flood.txt")
    text = README.read_text(encoding="utf-8")
    start = text.index("```\n", text.index("### Flood guard")) + 4
    documented = text[start : text.index("```\n", start)]
    assert "🌊" in documented and "quiet Grafana" in documented
    diff = "\n".join(
        difflib.unified_diff(
            _without_webhook_lines(_normalised(documented)),
            _without_webhook_lines(_normalised(fresh)),
            "README.md",
            "demo",
            lineterm="",
        )
    )
    assert not diff, (
        f"README's flood guard transcript differs from the demo's output; the demo printed:\n{fresh}\n{diff}"
    )
