"""The benchmark's PostgreSQL replicas (bench/replicas.py): what it reads from the replicas'
/metrics, what it counts as a failure, its targets and its lines of the report."""

from __future__ import annotations

import re
from typing import Any

from bench import replicas
from bench.replicas import Claims, check, parse_metrics, targets

METRICS = """\
# HELP integrations_bot_claims_total Commands this replica tried to claim
# TYPE integrations_bot_claims_total counter
integrations_bot_claims_total{result="won"} 120.0
integrations_bot_claims_total{result="lost"} 380.0
integrations_bot_claims_created{result="won"} 1.7e+09
integrations_bot_claim_takeovers_total 0.0
integrations_bot_state_up 1.0
"""


def test_claims_are_read_from_the_metrics_page() -> None:
    samples = parse_metrics(METRICS)
    assert samples['integrations_bot_claims_total{result="won"}'] == 120.0
    assert Claims.of(samples) == Claims(won=120, lost=380, takeovers=0)
    assert Claims.of(samples) - Claims(won=20, lost=80, takeovers=0) == Claims(won=100, lost=300, takeovers=0)
    assert Claims.of({}) == Claims(0, 0, 0)


def variant(count: int, *, p50: float = 1.2, throughput: float = 1.1, **changes: Any) -> dict[str, Any]:
    found: dict[str, Any] = {
        "name": replicas.variant_name(count),
        "replicas": count,
        "latency": {
            "bot": {"p50_ms": 4.0 * p50, "p99_ms": 8.0},
            "floor": {"p50_ms": 4.0, "p99_ms": 6.0},
            "ratio": {"p50": p50, "p99": 1.33},
        },
        "cost": {"bot disable": {"rest_total": 5.0}, "bot enable": {"rest_total": 5.0}},
        "cpu_ms_per_command": [2.0] * count,
        "postgres_cpu_ms_per_command": 0.9,
        "throughput": {"bot_per_second": 300.0 * throughput, "floor_per_second": 300.0, "ratio": throughput},
        "claims": [{"won": 300 // count, "lost": 300 - 300 // count, "takeovers": 0}] * count,
        "claims_won_in_burst": [100 // count] * count,
        "answers": {"commands": 300, "answered": 300, "answered_again": 0},
    }
    found.update(changes)
    return found


def test_a_clean_variant_has_no_failures() -> None:
    assert check(variant(3), [0, 0, 0]) == []


def test_a_command_run_twice_or_answered_twice_is_a_failure() -> None:
    claims = [{"won": 101, "lost": 199, "takeovers": 0}] * 3
    answers = {"commands": 300, "answered": 300, "answered_again": 1}
    problems = check(variant(3, claims=claims, answers=answers), [0, -15, 0])
    assert problems == [
        "PostgreSQL×3: replica 1 exited with -15",
        "PostgreSQL×3: 303 claims won for 300 commands",
        f"PostgreSQL×3: not every command answered exactly once: {answers}",
    ]


def test_targets_p50_for_each_replica_count_and_throughput_for_three() -> None:
    found = targets({"integrations": 1000, "variants": [variant(1, p50=1.3), variant(3, p50=1.5, throughput=0.9)]})
    assert [(t["target"], t["met"]) for t in found] == [
        ("p50 PostgreSQL×1/floor at 1000", True),
        ("p50 PostgreSQL×3/floor at 1000", False),
        ("throughput PostgreSQL×3/floor at 1000", False),
    ]


def test_the_report_shows_the_floor_sqlite_and_each_replica_count_side_by_side() -> None:
    sqlite = variant(1, cost={"bot disable": {"rest_total": 4.0}, "bot enable": {"rest_total": 4.0}})
    sqlite["cost"].update({"floor disable": {"rest_total": 4.0}, "floor enable": {"rest_total": 4.0}})
    results = {
        "replicas": {
            "integrations": 1000,
            "postgresql": "15",
            "sqlite": {k: sqlite[k] for k in ("latency", "cost", "cpu_ms_per_command", "throughput")},
            "variants": [variant(1), variant(3)],
        }
    }
    lines = replicas.table(results)
    assert lines[2].split() == ["floor", "SQLite", "PostgreSQL×1", "PostgreSQL×3"]
    cells = {label.strip(): found for label, *found in (re.split(r"\s{2,}", line) for line in lines[3:])}
    assert cells["REST calls per disable / enable"] == ["4 / 4", "4 / 4", "5 / 5", "5 / 5"]
    assert cells["claims won per replica: all"] == ["-", "-", "300", "100 / 100 / 100"]
    assert cells["answered exactly once"] == ["-", "-", "300/300", "300/300"]
    assert replicas.table({}) == []
