"""The chaos test's disturber keeps its promise: no call meets more failures than one burst
(tests/e2e/chaos_support.py `Disturber`), whatever the timing. Driven by a fake clock and a fake
server: which faults go in, and when."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, cast

from chaos_support import DISTURBANCES, SPACING, TICK, Crowd, Disturber

ENDPOINT = "integrations.get"


class FakeControl:
    """The part of `SandboxControl` the disturber uses: call counters and the faults it injects."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.pending: Counter[str] = Counter()  # failures injected and not yet used up
        self.injected: list[tuple[float, str]] = []
        self.now = 0.0

    def counters(self) -> Any:
        return type("Counters", (), {"rest": dict(self.calls)})()

    def fail_next(self, endpoint: str, times: int, mode: str, *, retry_after: float) -> None:
        self.pending[endpoint] += times
        self.injected.append((self.now, endpoint))

    def refuse_connections(self, seconds: float) -> None:
        pass

    def drop_connections(self) -> int:
        return 1

    def call(self, endpoint: str) -> bool:
        """One call reaches the server; True when a fault answers it."""
        self.calls[endpoint] += 1
        if self.pending[endpoint]:
            self.pending[endpoint] -= 1
            return True
        return False


class FakeCrowd:
    def __init__(self) -> None:
        self.control = FakeControl()

    def answered(self) -> int:
        return 0


BUSY = {action[1] for action in DISTURBANCES if action[0] == "burst"} - {ENDPOINT}


def run_until(disturber: Disturber, control: FakeControl, until: float) -> None:
    """Tick after tick; meanwhile every other endpoint is called (and its bursts used up) at once."""
    while control.now < until:
        for endpoint in BUSY:
            while control.call(endpoint):
                pass
        disturber.tick(total=300)
        control.now += TICK


def test_a_burst_used_up_late_is_followed_by_quiet_for_the_call_that_used_it(tmp_path: Path) -> None:
    crowd = FakeCrowd()
    control = crowd.control
    disturber = Disturber(cast(Crowd, crowd), [], tmp_path, clock=lambda: control.now)
    disturber.kills = 2  # no bot to kill here
    # Its first integrations.get burst goes in; nobody calls integrations.get for a long while.
    run_until(disturber, control, 60.0)
    first = [when for when, endpoint in control.injected if endpoint == ENDPOINT]
    assert len(first) == 1
    # Then one command's call meets it and retries as the bot's RestClient does: 4 attempts within
    # ~2 s (backoff 0.2 s doubling, plus latency), the disturber ticking meanwhile.
    failed = []
    for _attempt in range(4):
        failed.append(control.call(ENDPOINT))
        if not failed[-1]:
            break
        run_until(disturber, control, control.now + 0.6)
    assert failed == [True, True, False]  # the burst's two failures, then through
    # The next burst there comes SPACING after the last one was used up, not sooner.
    run_until(disturber, control, control.now + 60.0)
    later = [when for when, endpoint in control.injected if endpoint == ENDPOINT][1:]
    assert later and later[0] >= 60.0 + SPACING
