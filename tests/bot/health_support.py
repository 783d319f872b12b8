"""The health probe of a bot that is fully up, shared by the health endpoint and healthcheck tests."""

from __future__ import annotations

from bot.runtime.health import Probe

READY = Probe(
    realtime="ready",
    logged_in=True,
    subscriptions_ready=True,
    message_stream=True,
    state_db_open=True,
    permissions_loaded=True,
    stopping=False,
)
