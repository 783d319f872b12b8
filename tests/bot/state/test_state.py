"""The state database: exactly-once claims, audit trail, cursors, and versioned migrations."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.rocketchat.message_ids import MessageIds
from bot.state.store import MIGRATIONS, SCHEMA_VERSION, AuditRecord, StateStore, read_message_ids

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def audit(n: int, *, integration: str = "i1", actor: str = "u1", action: str = "disable") -> AuditRecord:
    return AuditRecord(
        at=NOW + timedelta(seconds=n),
        actor_id=actor,
        actor_username=f"user-{actor}",
        integration_id=integration,
        integration_name=f"hook {integration}",
        integration_type="webhook-incoming",
        action=action,
        room_id="GENERAL",
        reason=f"reason {n}",
        before={"enabled": True, "n": n},
        after={"enabled": False, "n": n},
    )


async def test_a_message_is_claimed_once_even_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    state = await StateStore.open(path)
    assert await state.claim_message("m1", "GENERAL", NOW, NOW) is True
    assert await state.claim_message("m1", "GENERAL", NOW, NOW) is False
    await state.close()

    reopened = await StateStore.open(path)
    assert await reopened.claim_message("m1", "GENERAL", NOW, NOW) is False
    assert await reopened.message_status("m1") == "claimed"
    assert await reopened.unfinished_messages() == ["m1"]
    assert await reopened.take_over(NOW, expired_only=False) == ["m1"]  # as a restart does first
    await reopened.finish_message("m1", "ok")
    assert await reopened.message_status("m1") == "done"
    assert await reopened.unfinished_messages() == []
    await reopened.close()


async def test_a_burst_of_messages_is_claimed_together_each_once(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    state = await StateStore.open(path)
    assert await state.claim_message("m0", "GENERAL", NOW, NOW) is True
    burst = [(f"m{n}", "GENERAL", NOW) for n in range(1200)]  # more than one statement's worth
    taken = await state.claim_messages([*burst, ("m7", "GENERAL", NOW)], NOW)  # m7 twice
    assert taken == {f"m{n}" for n in range(1, 1200)}  # m0 was taken before
    assert await state.claim_messages(burst[:3], NOW) == set()
    await state.close()
    reopened = await StateStore.open(path)
    assert await reopened.claim_message("m1199", "GENERAL", NOW, NOW) is False
    assert len(await reopened.unfinished_messages()) == 1200
    await reopened.close()


async def test_audit_history_is_newest_first_and_filterable(tmp_path: Path) -> None:
    state = await StateStore.open(tmp_path / "s.db")
    for n in range(5):
        await state.record(audit(n, integration="i1" if n % 2 == 0 else "i2", actor="u1" if n < 3 else "u2"))
    everything = await state.history()
    assert [r.before["n"] for r in everything if r.before] == [4, 3, 2, 1, 0]
    only_i2 = await state.history(integration_ids=["i2"])
    assert {r.integration_id for r in only_i2} == {"i2"} and len(only_i2) == 2
    assert await state.history(integration_ids=[]) == []
    by_u2 = await state.history(actor_id="u2", limit=1)
    assert len(by_u2) == 1 and by_u2[0].actor_id == "u2" and by_u2[0].after == {"enabled": False, "n": 4}
    await state.close()


async def test_cursor_only_moves_forward(tmp_path: Path) -> None:
    state = await StateStore.open(tmp_path / "s.db")
    await state.advance_cursor("r1", NOW)
    await state.advance_cursor("r1", NOW - timedelta(minutes=5))
    await state.advance_cursor("r2", NOW - timedelta(minutes=1))
    assert await state.cursors() == {"r1": NOW, "r2": NOW - timedelta(minutes=1)}
    await state.close()


async def test_prune_keeps_unfinished_claims(tmp_path: Path) -> None:
    state = await StateStore.open(tmp_path / "s.db")
    old = NOW - timedelta(days=3)
    await state.claim_message("done-old", "r", old, old)
    await state.finish_message("done-old", "ok")
    await state.claim_message("claimed-old", "r", old, old)
    await state.claim_message("done-new", "r", NOW, NOW)
    await state.finish_message("done-new", "ok")
    assert await state.prune_messages(NOW - timedelta(days=1)) == 1
    assert await state.message_status("done-old") is None
    assert await state.message_status("claimed-old") == "claimed"
    assert await state.message_status("done-new") == "done"
    await state.close()


async def test_an_empty_old_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    sqlite3.connect(path).close()  # a version-0 file, as an older release would leave it
    state = await StateStore.open(path)
    assert await state.schema_version() == SCHEMA_VERSION
    assert await state.claim_message("m", "r", NOW, NOW)
    await state.close()


async def test_a_file_from_a_newer_release_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(ConfigError, match="newer than this release"):
        await StateStore.open(path)


async def test_an_unopenable_path_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="BOT_STATE_DB"):
        await StateStore.open(blocker / "state.db")


# --- the key of the bot's message ids (bot/rocketchat/message_ids.py) -----------------------------------------


def key_of(path: Path) -> bytes:
    with sqlite3.connect(path) as db:
        (value,) = db.execute("SELECT value FROM secrets WHERE name = 'message-ids'").fetchone()
    return bytes(value)


async def test_the_message_id_key_is_made_on_first_open_and_kept_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    state = await StateStore.open(path)
    first = state.message_ids
    await state.close()
    assert len(key_of(path)) == 32
    reopened = await StateStore.open(path)
    # A re-sent answer after a restart has the same ids, so it is stored once.
    assert reopened.message_ids == first and reopened.message_ids.answer("cmd") == first.answer("cmd")
    await reopened.close()
    other = await StateStore.open(tmp_path / "other.sqlite3")
    assert key_of(tmp_path / "other.sqlite3") != key_of(path)  # random, not derived from anything
    assert other.message_ids.answer("cmd") != first.answer("cmd")
    await other.close()


async def test_a_new_file_derives_its_key_from_the_bots_secret(tmp_path: Path) -> None:
    """A lost file's successor has the same key (its answers already in the rooms are recognised);
    another secret, another key; a kept file keeps its key whatever secret comes later."""
    lost = await StateStore.open(tmp_path / "lost.sqlite3", key_seed=b"the-bots-token")
    successor = await StateStore.open(tmp_path / "new.sqlite3", key_seed=b"the-bots-token")
    other = await StateStore.open(tmp_path / "other.sqlite3", key_seed=b"another-token")
    assert successor.message_ids == lost.message_ids and other.message_ids != lost.message_ids
    assert b"the-bots-token" not in key_of(tmp_path / "new.sqlite3")
    for state in (lost, successor, other):
        await state.close()
    kept = await StateStore.open(tmp_path / "lost.sqlite3", key_seed=b"a-rotated-token")
    assert kept.message_ids == successor.message_ids
    await kept.close()


async def test_a_version_4_file_gets_a_key_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    connection = sqlite3.connect(path)
    for script in MIGRATIONS[:4]:
        connection.executescript(script)
    connection.execute(
        "INSERT INTO processed_messages (message_id, room_id, message_ts, claimed_at, status)"
        " VALUES ('m', 'r', 1, 1, 'claimed')"
    )
    connection.execute("PRAGMA user_version=4")
    connection.commit()
    connection.close()
    state = await StateStore.open(path)
    assert await state.schema_version() == SCHEMA_VERSION
    assert await state.unfinished_messages() == ["m"]
    assert state.message_ids == MessageIds(key_of(path))
    await state.close()


async def test_tools_beside_the_bot_read_its_ids_without_changing_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with pytest.raises(ConfigError, match="message id key"):
        read_message_ids(path)
    assert not path.exists()  # not created by looking
    state = await StateStore.open(path)
    assert read_message_ids(path) == state.message_ids  # while the bot has it open
    await state.close()
    assert read_message_ids(path) == state.message_ids


def test_the_key_never_shows_in_a_repr() -> None:
    key = bytes(range(32))
    assert key.hex() not in repr(MessageIds(key)) and str(key) not in repr(MessageIds(key))
