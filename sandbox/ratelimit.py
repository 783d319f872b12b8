"""The REST rate limiter of Rocket.Chat's API wrapper (contract §1.5).

Theory of operation
-------------------
Rocket.Chat attaches one Meteor `RateLimiter` rule to every versioned route+method, keyed by
(client IP, route+method); the caller's user id plays no part in the key. Meteor's rules count in
*fixed* windows: the rule remembers when it last reset and, once a whole interval has passed
since then, forgets every counter of that rule at once (the window is per rule, i.e. shared by
all IPs of one route). Each call first increments the counter and then checks it, so with the
default of 10 calls per 60 s the 11th call inside a window is refused with
`X-RateLimit-Remaining: 0` and a wait rounded up to whole seconds.

The limiter is sans-I/O: the REST layer asks `hit()` and renders the decision. The clock is
injectable (milliseconds since the epoch, because `X-RateLimit-Reset` is an epoch-ms value) so
tests can move time instead of sleeping.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sandbox.errors import MeteorError

MillisClock = Callable[[], float]


def wall_clock_ms() -> float:
    return time.time() * 1000


@dataclass(frozen=True)
class Decision:
    """What one call may do, and the numbers behind the `X-RateLimit-*` headers."""

    allowed: bool
    limit: int
    remaining: int
    time_to_reset_ms: float
    now_ms: float

    @property
    def reset_at_ms(self) -> int:
        return int(self.now_ms + self.time_to_reset_ms)

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at_ms),
        }

    def error(self) -> MeteorError:
        """The error Rocket.Chat throws for a refused call (rendered as a 429, §1.3)."""
        seconds = math.ceil(self.time_to_reset_ms / 1000)
        return MeteorError(
            "error-too-many-requests",
            f"Error, too many requests. Please slow down. You must wait {seconds} seconds before trying this "
            "endpoint again.",
            {"timeToReset": self.time_to_reset_ms, "seconds": seconds},
        )


@dataclass
class _Rule:
    limit: int
    interval_ms: float
    last_reset_ms: float
    counters: dict[str, int] = field(default_factory=dict)

    def reset(self, now_ms: float) -> None:
        self.counters.clear()
        self.last_reset_ms = now_ms


class RateLimiter:
    """Fixed-window counters per (route+method) rule and client IP, Meteor `RateLimiter` style."""

    def __init__(self, clock: MillisClock = wall_clock_ms) -> None:
        self._clock = clock
        self._rules: dict[str, _Rule] = {}
        self._lock = threading.Lock()

    def hit(self, route: str, client_ip: str, *, limit: int, interval_ms: float) -> Decision:
        """Count one call of `route` (e.g. `/api/v1/integrations.listget`) from `client_ip`."""
        with self._lock:
            now = self._clock()
            rule = self._rules.get(route)
            if rule is None or (rule.limit, rule.interval_ms) != (limit, interval_ms):
                # Rocket.Chat creates the rule when the route is registered and re-creates it
                # (forgetting all counters) when a limiter setting changes; the sandbox does it
                # at the route's first call, which only shifts where the windows start.
                rule = self._rules[route] = _Rule(limit, interval_ms, last_reset_ms=now)
            if now - rule.last_reset_ms > interval_ms:
                rule.reset(now)
            count = rule.counters.get(client_ip, 0) + 1
            rule.counters[client_ip] = count
            time_to_reset = interval_ms - (now - rule.last_reset_ms)
            if count > limit:
                return Decision(False, limit, 0, time_to_reset, now)
            return Decision(True, limit, limit - count, time_to_reset, now)

    def clear(self) -> None:
        """Forget every counter (a fresh server)."""
        with self._lock:
            self._rules.clear()
