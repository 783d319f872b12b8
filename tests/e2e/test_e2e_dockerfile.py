"""Issue 3: the image runs the documented `integrations-bot run`, as a non-root user.
Issue 6: its HEALTHCHECK runs `integrations-bot healthcheck` against the bot's /healthz.

No image can be built here (no engine, no base images), so the Dockerfile is read as text; hadolint
lints it in `make test`. What an operator relies on is checked: the process the container starts,
that it receives SIGTERM itself (exec form), who it runs as, where its state goes, and that the
health check command, run with the image's environment, tells a running bot from a stopped one.
"""

from __future__ import annotations

import json
import os
import posixpath
import shlex
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_support import REPO, bot_executable, running_workspace

from bot.ops import healthcheck

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
    assert scripts == {"integrations-bot": "bot.ops.cli:main"}
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


def image_environment(stage: list[Instruction]) -> dict[str, str]:
    env = " ".join(i.arguments for i in stage if i.keyword == "ENV")
    return dict(part.split("=", 1) for part in shlex.split(env) if "=" in part)


def health_check(stage: list[Instruction]) -> tuple[dict[str, str], list[str]]:
    """The HEALTHCHECK's options (`--interval=30s` → {"interval": "30s"}) and its exec-form command."""
    options_text, separator, command = last(stage, "HEALTHCHECK").arguments.partition("CMD ")
    assert separator, "HEALTHCHECK without CMD"
    options = dict(o.removeprefix("--").split("=", 1) for o in shlex.split(options_text))
    return options, exec_form(Instruction("CMD", command))


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    unit = next(u for u in ("ms", "s", "m", "h") if duration.endswith(u))
    return float(duration.removesuffix(unit)) * units[unit]


def test_the_healthcheck_runs_the_healthcheck_subcommand_on_the_published_port() -> None:
    stage = final_stage()
    options, command = health_check(stage)
    assert command == ["integrations-bot", "healthcheck"]  # exec form: no shell needed in the image
    assert options == {"interval": "30s", "timeout": "5s", "start-period": "20s", "retries": "3"}
    # Docker kills a probe at --timeout; the program's own timeout is shorter, so it can say why.
    assert seconds(options["timeout"]) > healthcheck.TIMEOUT
    env = image_environment(stage)
    assert env["BOT_HTTP_HOST"] == "0.0.0.0"  # reachable from outside the container (metrics scrapers)
    assert env["BOT_HTTP_PORT"] in last(stage, "EXPOSE").arguments.split()
    result = subprocess.run(
        [bot_executable(), "healthcheck", "--help"], check=False, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and "usage: integrations-bot healthcheck" in result.stdout


def test_the_healthcheck_passes_while_the_bot_runs_and_fails_once_it_stopped(tmp_path: Path) -> None:
    image_env = image_environment(final_stage())
    _, command = health_check(final_stage())
    argv = [bot_executable(), *command[1:]]
    (tmp_path / "bot").mkdir()
    # The image's settings, on a free port instead of 8080 (tests run side by side); the bot logs it.
    with running_workspace(tmp_path / "bot", BOT_HTTP_HOST=image_env["BOT_HTTP_HOST"], BOT_HTTP_PORT="0") as ws:
        port = ws.bot.wait_for_log("http.listening")["port"]
        # What the container's probe has: the image's environment, no Rocket.Chat settings at all.
        probe_env = {**image_env, "BOT_HTTP_PORT": str(port), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        probe_dir = tmp_path / "probe"
        probe_dir.mkdir()

        def probe() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                argv, env=probe_env, cwd=probe_dir, capture_output=True, text=True, timeout=30, check=False
            )

        healthy = probe()
        assert healthy.returncode == 0, healthy.stderr
        assert "healthy" in healthy.stdout and "realtime ready" in healthy.stdout
        assert ws.bot.terminate() == 0
        stopped = probe()
    assert stopped.returncode == 1
    assert stopped.stderr.count("\n") == 1 and "nothing answers" in stopped.stderr, stopped.stderr
