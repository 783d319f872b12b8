"""The deployment examples (`docker-compose.yml`, `docs/deploy/kubernetes.yaml`) stay true to the
bot: every variable they set is a real setting, their probes ask paths the bot serves on the
port the image listens on, and the files are well-formed YAML of the shape each tool expects.

No YAML library is a dependency of the project, so the files are read as text: both are written
in a plain subset (block style, two-space indentation, no tabs), which these checks hold them to.
"""

from __future__ import annotations

import re
from pathlib import Path

from bot.config import Settings
from bot.runtime.health import Probe, create_app
from bot.runtime.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
KUBERNETES = ROOT / "docs" / "deploy" / "kubernetes.yaml"
DOCKERFILE = ROOT / "Dockerfile"
README = ROOT / "README.md"

SETTINGS = {name.upper() for name in Settings.model_fields}
VARIABLE = re.compile(r"\b((?:BOT|ROCKETCHAT)_[A-Z0-9_]+)\b")


def _lines(path: Path) -> list[str]:
    """The file's lines without comments and blank lines."""
    kept = []
    for line in path.read_text().splitlines():
        code = re.sub(r"\s+#.*$", "", line) if not line.lstrip().startswith("#") else ""
        if code.strip():
            kept.append(code)
    return kept


def _values(path: Path, key: str) -> list[str]:
    """Every value of `key: value` in the file (quotes removed)."""
    found = []
    for line in _lines(path):
        match = re.match(rf"\s*(?:- )?{re.escape(key)}:\s*(.+)$", line)
        if match:
            found.append(match.group(1).strip().strip("\"'"))
    return found


def _env_value(path: Path, name: str) -> str:
    """A Kubernetes `- name: X` / `value: Y` pair's value."""
    lines = _lines(path)
    for index, line in enumerate(lines):
        if re.fullmatch(rf"\s*- name: {name}", line):
            match = re.fullmatch(r"\s*value:\s*(.+)", lines[index + 1])
            assert match, f"{name} has no value on the next line"
            return match.group(1).strip("\"'")
    raise AssertionError(f"{name} is not set in {path.name}")


def _image_port() -> int:
    match = re.search(r"\bBOT_HTTP_PORT=(\d+)", DOCKERFILE.read_text())
    assert match, "the Dockerfile sets BOT_HTTP_PORT"
    return int(match.group(1))


def _served_paths() -> set[str]:
    probe = Probe(
        realtime="ready",
        logged_in=True,
        subscriptions_ready=True,
        message_stream=True,
        state_db_open=True,
        permissions_loaded=True,
        stopping=False,
    )
    app = create_app(lambda: probe, Metrics())
    return {str(getattr(route, "path", "")) for route in app.routes}


def _check_plain_yaml(path: Path) -> None:
    """Block-style YAML as these files are written: no tabs, two-space indentation, every
    non-list line a `key: value` or `key:`; quotes and brackets balanced on each line."""
    for number, line in enumerate(_lines(path), 1):
        assert "\t" not in line, f"{path.name}:{number}: a tab"
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 2 == 0, f"{path.name}:{number}: indentation {indent}"
        text = line.strip()
        if text == "---":
            continue
        body = text[2:] if text.startswith("- ") else text
        is_key = re.match(r"(<<|[A-Za-z0-9_./\-]+):(\s|$)", body) is not None
        assert text.startswith("- ") or is_key, f"{path.name}:{number}: {text}"
        for opening, closing in ("[]", "{}"):
            assert body.count(opening) == body.count(closing), f"{path.name}:{number}: unbalanced {opening}{closing}"
        assert body.count('"') % 2 == 0, f"{path.name}:{number}: unbalanced quotes"


def test_every_variable_in_the_examples_is_a_setting() -> None:
    for path in (COMPOSE, KUBERNETES):
        named = set(VARIABLE.findall(path.read_text()))
        assert named, path.name
        assert named <= SETTINGS, f"{path.name} names variables the bot does not read: {sorted(named - SETTINGS)}"


def test_the_examples_are_plain_yaml() -> None:
    _check_plain_yaml(COMPOSE)
    _check_plain_yaml(KUBERNETES)


def test_the_compose_file_runs_two_replicas_on_a_healthy_postgresql() -> None:
    lines = _lines(COMPOSE)
    top = [line.rstrip(":") for line in lines if not line.startswith(" ")]
    assert {"services", "volumes"} <= set(top)
    start = lines.index("services:") + 1
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith(" "))
    services = [line.strip().rstrip(":") for line in lines[start:end] if re.fullmatch(r"  [a-z0-9-]+:", line)]
    bots = [name for name in services if name.startswith("bot-")]
    assert len(bots) == 2 and "db" in services, services
    assert _values(COMPOSE, "condition") == ["service_healthy"]
    assert _values(COMPOSE, "env_file") == ["bot.env"]
    assert any(value.startswith("postgresql://") for value in _values(COMPOSE, "BOT_STATE_URL"))
    assert _values(COMPOSE, "BOT_HTTP_PORT") == [str(_image_port())]
    published = [line.strip()[2:].strip('"') for line in lines if re.fullmatch(r'\s*- "[0-9.]+:\d+:\d+"', line)]
    assert len(published) == 2 and all(mapping.endswith(f":{_image_port()}") for mapping in published), published
    grace = int(_values(COMPOSE, "stop_grace_period")[0].removesuffix("s"))
    assert grace > Settings.model_fields["bot_shutdown_grace"].default


def test_the_kubernetes_probes_ask_what_the_bot_serves_on_its_port() -> None:
    port = _image_port()
    assert int(_env_value(KUBERNETES, "BOT_HTTP_PORT")) == port
    assert _values(KUBERNETES, "containerPort") == [str(port)]
    paths = _values(KUBERNETES, "path")
    assert paths == ["/readyz", "/healthz"], paths  # readiness, then liveness
    assert set(paths) <= _served_paths()
    text = KUBERNETES.read_text()
    readiness = text[text.index("readinessProbe:") : text.index("livenessProbe:")]
    liveness = text[text.index("livenessProbe:") : text.index("resources:")]
    assert "path: /readyz" in readiness and "path: /healthz" in liveness
    threshold = re.search(r"failureThreshold: (\d+)", liveness)
    assert threshold and int(threshold.group(1)) >= 3


def test_the_kubernetes_deployment_is_safe_to_roll_and_to_drain() -> None:
    kinds = _values(KUBERNETES, "kind")
    assert kinds == ["Secret", "Deployment", "PodDisruptionBudget"]
    assert _values(KUBERNETES, "replicas") == ["2"]
    assert _values(KUBERNETES, "maxUnavailable") == ["0"]
    assert _values(KUBERNETES, "maxSurge") == ["1"]
    assert _values(KUBERNETES, "minAvailable") == ["1"]
    assert "podAntiAffinity:" in KUBERNETES.read_text()
    grace = int(_values(KUBERNETES, "terminationGracePeriodSeconds")[0])
    assert grace > float(_env_value(KUBERNETES, "BOT_SHUTDOWN_GRACE"))
    assert grace > Settings.model_fields["bot_shutdown_grace"].default
    uid = re.search(r"--uid (\d+)", DOCKERFILE.read_text())
    assert uid and _values(KUBERNETES, "runAsUser") == [uid.group(1)]
    assert _values(KUBERNETES, "readOnlyRootFilesystem") == ["true"]
    assert any(value.startswith("postgresql://") for value in _values(KUBERNETES, "BOT_STATE_URL"))


def test_the_readme_points_at_both_examples() -> None:
    text = README.read_text()
    assert "docker-compose.yml" in text
    assert "docs/deploy/kubernetes.yaml" in text
