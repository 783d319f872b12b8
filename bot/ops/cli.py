"""The `integrations-bot` console script.

    integrations-bot run        run the bot in the foreground (SIGTERM/SIGINT stop it cleanly)
    integrations-bot check      connect with the configured credentials and print a readiness report
                                (both: `--credentials-file FILE [--as USER]` to use a sandbox's file;
                                `--help` lists every setting they read)
    integrations-bot healthcheck  ask the running bot's /healthz (BOT_HTTP_PORT): the container HEALTHCHECK
    integrations-bot sandbox    serve the seeded sandbox Rocket.Chat server (for tests and the demo)
    integrations-bot demo       sandbox + bot + a terminal chat to try the bot in

Exit codes: 0 success, 1 failure at run time (e.g. the server refused the bot's credentials),
2 configuration or usage error (one clear line on stderr). `healthcheck` exits 0 or 1 only (Docker
reserves 2) and reads no setting but BOT_HTTP_HOST/BOT_HTTP_PORT.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.config import load_settings, settings_help
from bot.errors import ConfigError
from bot.ops.credentials_file import DEFAULT_USER, connection_settings

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="integrations-bot",
        description="A Rocket.Chat bot that enables, disables and edits integrations from chat.",
    )
    parser.add_argument("--env-file", default=".env", help="optional .env file with settings (default: .env)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (
        ("run", "run the bot in the foreground"),
        ("check", "print a readiness report for the configured server and bot account"),
    ):
        command = commands.add_parser(
            name,
            help=text,
            description=text[0].upper() + text[1:] + ".",
            epilog=settings_help(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_argument(
            "--credentials-file",
            metavar="FILE",
            type=Path,
            help="take ROCKETCHAT_URL, ROCKETCHAT_USER_ID and ROCKETCHAT_AUTH_TOKEN from a credentials file "
            "written by `integrations-bot sandbox --credentials-file FILE`",
        )
        command.add_argument(
            "--as",
            dest="as_user",
            metavar="USER",
            default=DEFAULT_USER,
            help=f"whose credentials to take from that file (default: {DEFAULT_USER})",
        )
    commands.add_parser("healthcheck", help="exit 0 if the running bot's /healthz says healthy, else 1")
    commands.add_parser("sandbox", help="serve the seeded sandbox Rocket.Chat server", add_help=False)
    commands.add_parser("demo", help="sandbox + bot + terminal chat", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    # `sandbox` and `demo` own their options; hand them everything after the word.
    for word, module in (("sandbox", "sandbox.cli"), ("demo", "bot.demo.launcher")):
        if word in args_list and all(a.startswith("-") for a in args_list[: args_list.index(word)]):
            rest = args_list[args_list.index(word) + 1 :]
            if module == "sandbox.cli":
                from sandbox.cli import main as sandbox_main

                return sandbox_main(rest)
            from bot.demo.launcher import main as demo_main

            return demo_main(rest)
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return EXIT_CONFIG
    if args.command == "healthcheck":
        # Before load_settings: the probe must not depend on the Rocket.Chat settings being valid.
        from bot.ops.healthcheck import main as healthcheck_main

        return healthcheck_main(args.env_file)
    try:
        overrides = connection_settings(args.credentials_file, args.as_user) if args.credentials_file else None
        settings = load_settings(args.env_file, overrides)
        if args.command == "run":
            from bot.runtime.bot import main as run_main

            return run_main(settings)
        from bot.ops.check import main as check_main

        return check_main(settings)
    except ConfigError as exc:
        print(f"integrations-bot: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
