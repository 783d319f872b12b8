"""The REST rate limiter (contract §1.5): windows, headers, the 429 body and who bypasses it."""

from __future__ import annotations

import pytest
from rest_test_support import FakeClock, World, error_of, make_world

from sandbox.ratelimit import RateLimiter

ROUTE = "/integrations.listget"


def test_ten_calls_pass_and_the_eleventh_is_refused() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    decisions = [limiter.hit(ROUTE, "10.0.0.1", limit=10, interval_ms=60_000) for _ in range(11)]
    assert [d.allowed for d in decisions] == [True] * 10 + [False]
    assert [d.remaining for d in decisions] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0]


def test_the_window_is_fixed_and_resets_after_the_interval() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    for _ in range(10):
        limiter.hit(ROUTE, "ip", limit=10, interval_ms=60_000)
    clock.advance(59_000)
    refused = limiter.hit(ROUTE, "ip", limit=10, interval_ms=60_000)
    assert not refused.allowed
    assert refused.time_to_reset_ms == 1_000
    assert refused.reset_at_ms == int(clock.now + 1_000)
    clock.advance(1_001)
    assert limiter.hit(ROUTE, "ip", limit=10, interval_ms=60_000).remaining == 9


def test_counters_are_per_ip_and_per_route() -> None:
    limiter = RateLimiter(FakeClock())
    for _ in range(2):
        limiter.hit(ROUTE, "a", limit=2, interval_ms=1_000)
    assert not limiter.hit(ROUTE, "a", limit=2, interval_ms=1_000).allowed
    assert limiter.hit(ROUTE, "b", limit=2, interval_ms=1_000).allowed
    assert limiter.hit("/integrations.getget", "a", limit=2, interval_ms=1_000).allowed


def test_changing_the_limit_settings_starts_fresh_counters() -> None:
    limiter = RateLimiter(FakeClock())
    for _ in range(3):
        limiter.hit(ROUTE, "a", limit=2, interval_ms=1_000)
    assert limiter.hit(ROUTE, "a", limit=5, interval_ms=1_000).remaining == 4


def test_error_text_rounds_the_wait_up_to_whole_seconds() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    limiter.hit(ROUTE, "a", limit=1, interval_ms=60_000)
    clock.advance(17_500)
    error = limiter.hit(ROUTE, "a", limit=1, interval_ms=60_000).error()
    assert error.message == (
        "Error, too many requests. Please slow down. You must wait 43 seconds before trying this endpoint again."
        " [error-too-many-requests]"
    )


# --- through the REST wrapper ------------------------------------------------------------------------


@pytest.fixture
def world() -> World:
    world = make_world(rate_limit=True)
    world.store.set_setting("API_Enable_Rate_Limiter_Limit_Calls_Default", 3)
    return world


def test_429_body_and_headers_after_the_limit(world: World) -> None:
    alice = world.user("alice")
    codes = []
    for _ in range(4):
        response = world.get(alice, "me")
        codes.append(response.status_code)
    assert codes == [200, 200, 200, 429]
    assert response.json() == {
        "success": False,
        "error": "Error, too many requests. Please slow down. You must wait 60 seconds before trying this endpoint"
        " again. [error-too-many-requests]",
    }
    assert response.headers["X-RateLimit-Limit"] == "3"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert response.headers["X-RateLimit-Reset"] == str(int(world.clock.now + 60_000))


def test_every_limited_response_carries_the_headers(world: World) -> None:
    alice = world.user("alice")
    ok = world.get(alice, "me")
    failed = world.get(alice, "rooms.info", {"roomId": "nope"})  # a 400 of the handler
    invalid = world.get(alice, "integrations.get")  # a 400 of the parameter validation
    assert ok.headers["X-RateLimit-Remaining"] == "2"
    assert failed.status_code == 400
    assert failed.headers["X-RateLimit-Remaining"] == "2"  # another route, its own counter
    assert invalid.status_code == 400
    assert invalid.headers["X-RateLimit-Limit"] == "3"


def test_rate_limit_comes_before_validation_and_permission(world: World) -> None:
    alice = world.user("alice")
    for _ in range(3):
        assert world.get(alice, "integrations.list", {"bogus": "1"}).status_code == 400
    assert world.get(alice, "integrations.list", {"bogus": "1"}).status_code == 429
    assert world.get(alice, "integrations.list").status_code == 429  # would be 403


def test_the_window_reopens_when_the_clock_moves(world: World) -> None:
    alice = world.user("alice")
    for _ in range(4):
        world.get(alice, "me")
    world.clock.advance(60_001)
    assert world.get(alice, "me").status_code == 200


@pytest.mark.parametrize("role", ["admin", "bot", "app"])
def test_holders_of_api_bypass_rate_limit_are_not_limited(world: World, role: str) -> None:
    caller = world.user("caller", roles=(role,))
    responses = [world.get(caller, "me") for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 5
    assert "X-RateLimit-Limit" not in responses[-1].headers


def test_bypass_follows_the_permission_not_the_role_name(world: World) -> None:
    alice = world.user("alice")
    world.grant(alice, "api-bypass-rate-limit")
    assert all(world.get(alice, "me").status_code == 200 for _ in range(5))


def test_the_key_is_the_client_ip_not_the_user(world: World) -> None:
    alice, bob = world.user("alice"), world.user("bob")
    for _ in range(3):
        world.get(alice, "me", headers={"X-Real-IP": "10.0.0.1"})
    assert world.get(bob, "me", headers={"X-Real-IP": "10.0.0.1"}).status_code == 429
    assert world.get(bob, "me", headers={"X-Real-IP": "10.0.0.2"}).status_code == 200


def test_login_is_limited_for_anonymous_callers(world: World) -> None:
    world.user("alice")
    codes = [world.post(None, "login", {"user": "alice", "password": "wrong"}).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]


def test_unauthenticated_calls_are_refused_before_counting(world: World) -> None:
    alice = world.user("alice")
    for _ in range(5):
        assert world.get(None, "me").status_code == 401
    assert world.get(alice, "me").headers["X-RateLimit-Remaining"] == "2"


def test_off_unless_both_the_config_and_the_setting_enable_it() -> None:
    disabled = make_world(rate_limit=False)
    alice = disabled.user("alice")
    responses = [disabled.get(alice, "me") for _ in range(12)]
    assert responses[-1].status_code == 200
    assert "X-RateLimit-Limit" not in responses[-1].headers
    setting_off = make_world(rate_limit=True)
    setting_off.store.set_setting("API_Enable_Rate_Limiter", False)
    bob = setting_off.user("bob")
    assert [setting_off.get(bob, "me").status_code for _ in range(12)][-1] == 200


def test_default_is_ten_calls_per_minute() -> None:
    world = make_world(rate_limit=True)
    alice = world.user("alice")
    responses = [world.get(alice, "me") for _ in range(11)]
    assert [r.status_code for r in responses] == [200] * 10 + [429]
    assert responses[0].headers["X-RateLimit-Limit"] == "10"
    assert error_of(responses[-1])["error"].endswith("[error-too-many-requests]")


def test_api_info_is_not_a_versioned_route_and_not_limited(world: World) -> None:
    assert all(world.client.get("/api/info").status_code == 200 for _ in range(5))
