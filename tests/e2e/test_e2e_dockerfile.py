"""Issue 3: the image runs the documented `integrations-bot run`, as a non-root user.

No image can be built here (no engine, no base images), so the Dockerfile is read as text; hadolint
lints it in `make test`. What an operator relies on is checked: the process the container starts,
that it receives SIGTERM itself (exec form), who it runs as, and where its state goes.
"""

from __future__ import annotations

import json
import posixpath
import shlex
import subprocess
import tomllib
from dataclasses import dataclass

import pytest
from e2e_support import REPO, bot_executable

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def final_stage() -> list[Instruction]:
    """The instructions of the last build stage (after the last FROM), continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    instructions = [Instruction(*[*text.split(None, 1), ""][:2]) for text in logical]
    starts = [i for i, ins in enumerate(instructions) if ins.keyword.upper() == "FROM"]
    assert starts, "no FROM"
    return [Instruction(i.keyword.upper(), i.arguments.strip()) for i in instructions[starts[-1] :]]


def last(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert found, f"no {keyword} in the final stage"
    return found[-1]


def exec_form(instruction: Instruction) -> list[str]:
    """The JSON-array form; shell form would run `/bin/sh -c`, which does not pass SIGTERM on."""
    value = json.loads(instruction.arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), instruction
    return value


def test_the_container_runs_integrations_bot_run() -> None:
    stage = final_stage()
    command = exec_form(last(stage, "ENTRYPOINT")) + exec_form(last(stage, "CMD"))
    assert command == ["integrations-bot", "run"]
    # It is the documented command ...
    assert "integrations-bot run" in (REPO / "README.md").read_text()
    # ... the console script the package installs ...
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"integrations-bot": "bot.cli:main"}
    # ... and `run` is a command it knows.
    result = subprocess.run(
        [bot_executable(), "run", "--help"], check=False, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and "usage: integrations-bot run" in result.stdout


def test_it_runs_as_a_non_root_user_that_owns_the_state_directory() -> None:
    stage = final_stage()
    user = last(stage, "USER").arguments.split(":", 1)[0]
    assert user not in ("root", "0", "")
    assert stage.index(last(stage, "USER")) > max(i for i, ins in enumerate(stage) if ins.keyword == "RUN")
    created = [shlex.split(i.arguments) for i in stage if i.keyword == "RUN" and "useradd" in i.arguments]
    assert len(created) == 1, "the final stage creates exactly one user"
    useradd = created[0][created[0].index("useradd") :]
    if user.isdigit():
        assert useradd[useradd.index("--uid") + 1] == user
    else:
        assert useradd[-1] == user
    home = useradd[useradd.index("--home-dir") + 1]
    assert "--create-home" in useradd

    env = " ".join(i.arguments for i in stage if i.keyword == "ENV")
    state_db = dict(part.split("=", 1) for part in shlex.split(env) if "=" in part)["BOT_STATE_DB"]
    assert posixpath.dirname(state_db) == home  # the bot can write its state file
    assert json.loads(last(stage, "VOLUME").arguments) == [home]
    assert last(stage, "WORKDIR").arguments == home
