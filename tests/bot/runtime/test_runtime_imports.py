"""What the running bot loads: a bot on a SQLite file does not load the PostgreSQL driver.

psycopg and its pool are ~10 MB of resident memory; imported by bot.runtime.bot for every bot,
they took the SQLite bot to 89 MB at 10,000 integrations in `make bench` (target: 80 MB).
"""

from __future__ import annotations

import subprocess
import sys

from tests.session_support import REPO


def test_the_runtime_does_not_import_the_postgresql_driver_until_a_database_url_asks_for_it() -> None:
    code = "import sys, bot.ops.cli, bot.runtime.bot; print(sorted(m for m in sys.modules if m.startswith('psycopg')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip() == "[]"
