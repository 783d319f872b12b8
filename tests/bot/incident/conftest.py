"""The timer service's rig (the sandbox REST app, a SQLite state, a manual clock) for the other
incident tests that need one too (the flood guard's)."""

from tests.bot.incident.test_timer_service import rig  # noqa: F401 (a fixture)
