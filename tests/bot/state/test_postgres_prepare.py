"""`BOT_STATE_PREPARE`: on PostgreSQL the statements a connection runs often are prepared (parsed
and planned once per connection: about a third of the server's CPU per statement), unless turned
off for a transaction-pooling PgBouncer that does not keep track of prepared statements."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.config import Settings
from bot.state.store import StateStore

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("prepare", [True, False])
async def test_claims_are_prepared_unless_turned_off(postgres_url: str, prepare: bool) -> None:
    store = await StateStore.connect(postgres_url, prepare=prepare)
    try:
        for i in range(8):  # one connection: nothing runs concurrently
            assert await store.claim_messages([(f"m{prepare}{i}", "R", NOW)], NOW) == {f"m{prepare}{i}"}
        rows = await store.database.rows(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'INSERT INTO processed_messages%'"
        )
        assert (rows[0][0] > 0) is prepare
    finally:
        await store.close()


def test_the_setting_is_on_by_default_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROCKETCHAT_URL", "https://chat.example.org")
    monkeypatch.setenv("ROCKETCHAT_USER_ID", "bot")
    monkeypatch.setenv("ROCKETCHAT_AUTH_TOKEN", "token")
    assert Settings().bot_state_prepare is True
    monkeypatch.setenv("BOT_STATE_PREPARE", "false")
    assert Settings().bot_state_prepare is False
