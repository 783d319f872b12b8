"""`integrations-bot sandbox`: serve the demo workspace in the foreground until SIGINT/SIGTERM.

The credentials file (users with tokens and passwords, room ids, integration ids, the control
API's URL and secret) is written only once the server accepts connections, to a temporary file
that is then renamed, so a reader that sees the file can connect at once. It holds secrets and is
created readable by its owner only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from sandbox.config import SandboxConfig
from sandbox.seed import seed_demo
from sandbox.server import SandboxServer
from sandbox.store import Store

DEFAULT_CREDENTIALS = "sandbox-credentials.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="integrations-bot sandbox",
        description="Run a sandbox Rocket.Chat (REST + realtime DDP) with a seeded demo workspace.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=3000, help="port; 0 picks a free one (default: %(default)s)")
    parser.add_argument(
        "--legacy-update",
        action="store_true",
        help="imitate the 7.x incoming integrations.update that wipes omitted alias/avatar/emoji/script",
    )
    parser.add_argument(
        "--omitted-ignored",
        action="store_true",
        help="store omitted update fields as unchanged instead of null (a driver that ignores undefined)",
    )
    parser.add_argument("--rate-limit", action="store_true", help="enforce the REST rate limiter (10 calls/60 s)")
    parser.add_argument(
        "--credentials-file",
        default=DEFAULT_CREDENTIALS,
        help="where to write URLs, tokens and ids once the server is up (default: %(default)s)",
    )
    parser.add_argument("--empty", action="store_true", help="start without the demo workspace")
    return parser


def write_credentials(path: Path, credentials: dict[str, Any]) -> None:
    """Atomically (temp file + rename), readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(credentials, handle, indent=2)
            handle.write("\n")
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = SandboxConfig(
        update_mode="legacy" if args.legacy_update else "8.x",
        omitted_as_null=not args.omitted_ignored,
        rate_limit=args.rate_limit,
    )
    store = Store()
    seeded: dict[str, Any] = {"users": {}, "rooms": {}, "integrations": {}} if args.empty else seed_demo(store)
    server = SandboxServer(store, config)

    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            server.start(args.host, args.port)
        except OSError as exc:
            sys.stderr.write(f"sandbox: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}\n")
            return 1
        credentials = {
            "url": server.url,
            **seeded,
            "control": {"url": server.url, "secret": server.control_secret},
        }
        path = Path(args.credentials_file)
        write_credentials(path, credentials)
        sys.stderr.write(f"sandbox: Rocket.Chat sandbox at {server.url} (credentials in {path})\n")
        sys.stderr.flush()
        while not stop.wait(0.5):
            pass
        return 0
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
