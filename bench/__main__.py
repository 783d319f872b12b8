"""`python -m bench` (`make bench`): run the benchmark, print the table, write bench/results.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from bench.driver import BenchConfig, run_bench
from bench.report import table

RESULTS = Path(__file__).resolve().parent / "results.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON (default: %(default)s)")
    parser.add_argument("--sizes", default="100,1000,10000", help="integration counts, comma-separated")
    parser.add_argument("--users", type=int, default=BenchConfig.users)
    parser.add_argument("--rooms", type=int, default=BenchConfig.rooms)
    parser.add_argument("--rounds", type=int, default=BenchConfig.latency_rounds, help="latency commands per client")
    parser.add_argument("--warmup", type=int, default=BenchConfig.warmup_rounds)
    parser.add_argument("--cost-commands", type=int, default=BenchConfig.cost_commands)
    parser.add_argument("--throughput", type=int, default=BenchConfig.throughput_commands, help="commands at once")
    parser.add_argument("--throughput-users", type=int, default=BenchConfig.throughput_users)
    parser.add_argument("--throughput-size", type=int, default=BenchConfig.throughput_size)
    parser.add_argument(
        "--replicas",
        default=",".join(map(str, BenchConfig.replica_counts)),
        help="PostgreSQL replica counts at the throughput size, comma-separated (empty: none)",
    )
    parser.add_argument("--targets", type=int, default=BenchConfig.targets)
    parser.add_argument(
        "--catchup-rooms", type=int, default=BenchConfig.catchup_rooms, help="rooms for the catch-up figure (0: none)"
    )
    parser.add_argument("--catchup-active", type=int, default=BenchConfig.catchup_active)
    parser.add_argument("--storm-rate", type=int, default=BenchConfig.storm_rate, help="webhook messages/s (0: none)")
    parser.add_argument("--storm-rounds", type=int, default=BenchConfig.storm_rounds)
    parser.add_argument("--storm-seconds", type=float, default=BenchConfig.storm_seconds)
    args = parser.parse_args(argv)
    config = BenchConfig(
        sizes=tuple(int(s) for s in args.sizes.split(",")),
        users=args.users,
        rooms=args.rooms,
        latency_rounds=args.rounds,
        warmup_rounds=args.warmup,
        cost_commands=args.cost_commands,
        throughput_commands=args.throughput,
        throughput_users=args.throughput_users,
        throughput_size=args.throughput_size,
        replica_counts=tuple(int(n) for n in args.replicas.split(",") if n.strip()),
        targets=args.targets,
        catchup_rooms=args.catchup_rooms,
        catchup_active=args.catchup_active,
        storm_rate=args.storm_rate,
        storm_rounds=args.storm_rounds,
        storm_seconds=args.storm_seconds,
    )

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    results = asyncio.run(run_bench(config, log))
    print(table(results))
    output: Path = args.output
    temp = output.with_name(output.name + ".tmp")
    temp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    os.replace(temp, output)
    return 1 if results["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
