"""A pytest session in a child process, wired exactly as this repository is (its root conftest.py),
for tests of what the suite-wide hooks do to a whole session (tests/test_secret_watch.py,
tests/test_isolation.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTEST = ("-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function")


def run_session(tmp_path: Path, name: str, tests: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Write `tests` as `name` beside a copy of the root conftest.py and run pytest with `args`
    (options, then the tests to run: the whole file when no test id is given)."""
    (tmp_path / "conftest.py").write_text((REPO / "conftest.py").read_text())
    (tmp_path / name).write_text(textwrap.dedent(tests))
    selection = () if any(arg.startswith(name) for arg in args) else (name,)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, *PYTEST, "--rootdir", str(tmp_path), *args, *selection],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
