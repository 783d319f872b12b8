"""`python -m bench.sandbox_process`: the sandbox Rocket.Chat seeded with a benchmark workspace.

Runs in its own process so that the sandbox, the bot and the driver each have their own
interpreter (and GIL): on two cores, a sandbox inside the driver would compete with the floor
client for one interpreter and make the floor look slower than it is. Writes a JSON credentials
file (atomically) once the server accepts connections, then serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path
from types import FrameType

from bench.probe import BenchApp
from bench.workspace import WorkspaceSpec, seed_workspace
from sandbox.cli import write_credentials
from sandbox.config import SandboxConfig
from sandbox.server import SandboxServer
from sandbox.store import Store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox_process")
    parser.add_argument("--credentials-file", required=True)
    parser.add_argument("--users", type=int, default=WorkspaceSpec.users)
    parser.add_argument("--rooms", type=int, default=WorkspaceSpec.rooms)
    parser.add_argument("--integrations", type=int, default=WorkspaceSpec.integrations)
    args = parser.parse_args(argv)
    spec = WorkspaceSpec(users=args.users, rooms=args.rooms, integrations=args.integrations)

    started = time.perf_counter()
    store = Store()
    seeded = seed_workspace(store, spec)
    seed_seconds = time.perf_counter() - started
    server = SandboxServer(store, SandboxConfig())
    server.app = BenchApp(server.app, store, server.control_secret, spec.rooms)

    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    server.start()
    try:
        write_credentials(
            Path(args.credentials_file),
            {
                "url": server.url,
                "control": {"url": server.url, "secret": server.control_secret},
                "seed_seconds": seed_seconds,
                **seeded,
            },
        )
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
