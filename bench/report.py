"""The results as a plain-text table (printed by `make bench`, pasted into the README)."""

from __future__ import annotations

from typing import Any

from bench import replicas, storm


def _ms(summary: dict[str, Any]) -> str:
    return f"{summary['p50_ms']:.1f} / {summary['p90_ms']:.1f} / {summary['p99_ms']:.1f}"


def _cost(cost: dict[str, Any]) -> str:
    return f"{cost['rest_total']:g}"


def table(results: dict[str, Any]) -> str:
    stages = results["stages"]
    config = results["config"]
    header = ["", *(f"{s['integrations']:,} integrations" for s in stages)]
    rows: list[list[str]] = [
        ["bot ready after start (s)", *(f"{s['ready_seconds']:.2f}" for s in stages)],
        ["first catch-up pass, after ready (s)", *(f"{s['catchup_seconds']:.2f}" for s in stages)],
        ["bot resident memory (MB)", *(f"{s['rss_mb']:.1f}" for s in stages)],
        ["bot CPU per command (ms)", *(f"{s['bot_cpu_ms_per_command']:.2f}" for s in stages)],
        ["bot latency p50 / p90 / p99 (ms)", *(_ms(s["latency"]["all"]["bot"]) for s in stages)],
        ["floor latency p50 / p90 / p99 (ms)", *(_ms(s["latency"]["all"]["floor"]) for s in stages)],
        [
            "ratio bot/floor p50 / p90 / p99",
            *("{p50:.2f} / {p90:.2f} / {p99:.2f}".format(**s["latency"]["all"]["ratio"]) for s in stages),
        ],
        [
            "  disable: ratio p50 / p99",
            *(
                f"{s['latency']['disable']['ratio']['p50']:.2f} / {s['latency']['disable']['ratio']['p99']:.2f}"
                for s in stages
            ),
        ],
        [
            "  enable: ratio p50 / p99",
            *(
                f"{s['latency']['enable']['ratio']['p50']:.2f} / {s['latency']['enable']['ratio']['p99']:.2f}"
                for s in stages
            ),
        ],
        [
            "REST calls per disable: bot (floor)",
            *(f"{_cost(s['cost']['bot disable'])} ({_cost(s['cost']['floor disable'])})" for s in stages),
        ],
        [
            "REST calls per enable: bot (floor)",
            *(f"{_cost(s['cost']['bot enable'])} ({_cost(s['cost']['floor enable'])})" for s in stages),
        ],
        [
            "DDP frames per disable: out / in",
            *(
                f"{s['cost']['bot disable']['ddp_frames_out']:g} / {s['cost']['bot disable']['ddp_frames_in']:g}"
                for s in stages
            ),
        ],
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in [header, *rows]]
    out = [
        f"integrations-bot benchmark, {results['generated']}",
        f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
        f"{results['machine']['memory_gb']} GB, Python {results['machine']['python']}, {results['machine']['system']}",
        f"workspace: {config['users']:,} users, {config['rooms']:,} rooms; latency: {config['latency_rounds']} "
        f"commands per client and size after {config['warmup_rounds']} warm-up rounds, alternating disable/enable",
        "",
        *lines,
        "",
    ]
    for stage in stages:
        cost = stage["cost"]["bot disable"]
        endpoints = ", ".join(f"{k} {v:g}" for k, v in cost["rest"].items())
        out.append(f"per disable at {stage['integrations']:,} integrations: {endpoints}")
    out.extend([*replicas.table(results), ""])
    for stage in stages:
        found = stage["throughput"]
        if found is not None:
            out.append(
                f"throughput at {stage['integrations']:,} integrations, {found['commands']:,} commands from "
                f"{found['users']} users at once: bot {found['bot_seconds']:.2f} s ({found['bot_per_second']:.0f}/s), "
                f"floor {found['floor_seconds']:.2f} s ({found['floor_per_second']:.0f}/s), "
                f"ratio {found['ratio']:.2f}"
            )
    out.extend(storm.table(results))
    catchup = results.get("catchup")
    if catchup is not None:
        endpoints = ", ".join(f"{k} {v:g}" for k, v in catchup["rest"].items())
        seconds = "?" if catchup["pass_seconds"] is None else f"{catchup['pass_seconds']:.2f}"
        out.append(
            f"catch-up after a reconnect, bot in {catchup['rooms']:,} rooms, {catchup['active']} with a command: "
            f"{catchup['calls']} REST calls ({endpoints}), pass {seconds} s"
        )
    out.append("")
    out.append("targets:")
    for target in results["targets"]:
        mark = "met" if target["met"] else "NOT MET"
        out.append(f"  {target['target']}: {target['value']:g} (limit {target['limit']:g}) {mark}")
    if results["failures"]:
        out.append("")
        out.append("FAILURES:")
        out.extend(f"  {failure}" for failure in results["failures"])
    return "\n".join(out)
