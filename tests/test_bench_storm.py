"""The benchmark's webhook storm (bench/storm.py): its target, its report lines, and the in-process
measure of the flood guard's cost per message."""

from __future__ import annotations

from typing import Any

from bench import storm


def figures(p50_ratio: float) -> dict[str, Any]:
    return {
        "rate_asked": 200,
        "rate_posted": 198.5,
        "webhooks": 2,
        "rooms": 10,
        "commands": {"quiet": 100, "storm": 100},
        "quiet": {"p50_ms": 6.0, "p99_ms": 20.0},
        "storm": {"p50_ms": 6.0 * p50_ratio, "p99_ms": 25.0},
        "p50_ratio": p50_ratio,
        "cpu_messages": 1000,
        "cpu_seconds": 5.0,
        "bot_cpu_us_per_message": 61.5,
        "guard": {"window_us": 1.7, "window_and_guard_us": 1.9, "guard_us": 0.2},
    }


def test_the_storm_target_is_the_storm_p50_over_the_quiet_p50_of_the_same_run() -> None:
    assert storm.targets(None) == []
    [met] = storm.targets(figures(1.2))
    assert met["met"] is True and met["limit"] == 1.5 and "200/s" in met["target"]
    [missed] = storm.targets(figures(1.6))
    assert missed["met"] is False and missed["value"] == 1.6


def test_the_report_says_rate_latency_and_cost_per_message() -> None:
    assert storm.table({}) == []
    latency, cost = storm.table({"storm": figures(1.1)})
    assert "198.5/s stored (200/s asked)" in latency and "p50 ratio 1.10" in latency
    assert "61.5 µs" in cost and "flood guard 0.2 µs" in cost


def test_the_guard_cost_is_measured_per_message() -> None:
    cost = storm.guard_cost(messages=5_000)
    assert cost["window_and_guard_us"] > 0 and cost["window_us"] > 0
    assert abs(cost["guard_us"] - max(0.0, cost["window_and_guard_us"] - cost["window_us"])) <= 0.011


def test_the_storming_webhooks_are_incoming_ones_no_other_stage_toggles() -> None:
    hooks = storm.storm_hooks(100)
    assert len(hooks) == storm.HOOKS
    numbers = [int(name.rsplit("-", 1)[1]) for name in hooks]
    assert all(n % 3 != 2 and n >= 60 for n in numbers), hooks
