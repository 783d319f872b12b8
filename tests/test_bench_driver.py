"""The benchmark's driver (bench/driver.py): how the throughput of several bursts is reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.driver import BenchConfig, Run
from bench.report import bursts


@pytest.mark.parametrize(
    ("ratios", "reported"),
    [([0.70, 0.95, 0.80], 0.80), ([1.10], 1.10), ([0.9, 0.7, 1.2, 1.0, 0.8], 0.9)],
)
async def test_the_pair_with_the_median_ratio_is_reported_with_every_ratio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ratios: list[float], reported: float
) -> None:
    run = Run(BenchConfig(throughput_bursts=len(ratios)), tmp_path, log=lambda *_: None)
    left = list(ratios)

    async def burst(*_: Any) -> dict[str, Any]:
        ratio = left.pop(0)
        return {"commands": 1000, "users": 100, "bot_seconds": 3.0 / ratio, "floor_seconds": 3.0, "ratio": ratio}

    monkeypatch.setattr(run, "_burst", burst)
    found = await run._throughput(None, None, [])  # type: ignore[arg-type]
    assert found["ratio"] == reported and found["bot_seconds"] == 3.0 / reported
    assert found["ratios"] == ratios
    shown = " / ".join(f"{r:.2f}" for r in ratios)
    assert bursts(found) == ("" if len(ratios) == 1 else f" (the median of {len(ratios)} bursts: {shown})")
