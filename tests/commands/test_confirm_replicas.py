"""A `set` previewed through one bot process is confirmed through another that shares its state
database (two replicas on PostgreSQL; two processes one after the other on a SQLite file)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from set_harness import Harness, open_harness

from bot.state.store import StateStore
from commands.reply import Reply

Opener = Callable[[], Awaitable[StateStore]]


def code_of(reply: Reply) -> str:
    found = re.search(r"confirm ([A-Z0-9]{4})", reply.text)
    assert found is not None, reply.text
    return found.group(1)


@pytest.fixture(params=["sqlite", "postgresql"])
async def replicas(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Harness, Harness]]:
    """Two bots on one workspace and one state database."""
    opener: Opener
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")

        def opener() -> Awaitable[StateStore]:
            return StateStore.connect(url)
    else:

        def opener() -> Awaitable[StateStore]:
            return StateStore.open(tmp_path / "state.sqlite3")

    first = await open_harness(state=await opener())
    second_state = await opener()
    try:
        yield first, first.replica(second_state)
    finally:
        await second_state.close()
        await first.close()


async def test_a_preview_from_one_replica_is_confirmed_through_another(replicas: tuple[Harness, Harness]) -> None:
    a, b = replicas
    made = a.control.create_incoming_integration("Two replicas", channel="#general", alias="old")
    preview = await a.say("admin", "ops", f"!integration set {made['_id']} alias=new")
    assert preview.outcome == "preview", preview.text
    assert a.writes() == 0

    # Someone else, or the owner in another room, cannot confirm it through the other replica either.
    assert (await b.say("owen", "ops", f"!integration confirm {code_of(preview)}")).outcome == "foreign"
    assert (await b.say("admin", "general", "!integration yes")).outcome == "none"

    applied = await b.say("admin", "ops", "!integration yes")
    assert applied.outcome == "changed", applied.text
    assert a.doc(made["_id"])["alias"] == "new"
    assert a.writes() == 1
    # The second tap, through the first replica: already applied, nothing written again.
    again = await a.say("admin", "ops", f"!integration confirm {code_of(preview)}")
    assert again.outcome == "applied", again.text
    assert a.writes() == 1
    assert [r.action for r in await a.services.state.history()] == ["set"]


async def test_one_code_confirmed_through_two_replicas_at_once_is_applied_once(
    replicas: tuple[Harness, Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = replicas
    made = a.control.create_incoming_integration("Raced", channel="#general")
    code = code_of(await a.say("admin", "ops", f"!integration set {made['_id']} alias=raced"))
    rest, update = a.services.rest, a.services.rest.integrations_update
    answered = asyncio.Event()

    async def over_the_network(body: Any, *, retry: bool = True) -> dict[str, Any]:
        # The write lands only once the other confirmation is answered: it arrives meanwhile,
        # however slowly either replica runs. (Were both to write, both would wait here and fail.)
        await asyncio.wait_for(answered.wait(), timeout=30)
        return await update(body, retry=retry)

    async def confirm(replica: Harness) -> Reply:
        reply = await replica.say("admin", "ops", f"!integration confirm {code}")
        answered.set()
        return reply

    monkeypatch.setattr(rest, "integrations_update", over_the_network)
    first, second = await asyncio.gather(confirm(a), confirm(b))
    assert sorted([first.outcome, second.outcome]) == ["applying", "changed"], (first.text, second.text)
    assert a.writes() == 1
    assert a.doc(made["_id"])["alias"] == "raced"


async def test_a_bulk_preview_from_one_replica_is_confirmed_through_another_once(
    replicas: tuple[Harness, Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = replicas
    code = code_of(await a.say("admin", "ops", "!integration disable all in #alerts"))
    assert a.writes() == 0
    assert (await b.say("owen", "ops", f"!integration confirm {code}")).outcome == "foreign"
    rest, update = a.services.rest, a.services.rest.integrations_update
    answered = asyncio.Event()

    async def over_the_network(body: Any, *, retry: bool = True) -> dict[str, Any]:
        await asyncio.wait_for(answered.wait(), timeout=30)  # the other confirmation arrives meanwhile
        return await update(body, retry=retry)

    async def confirm(replica: Harness) -> Reply:
        reply = await replica.say("admin", "ops", f"!integration confirm {code}")
        answered.set()
        return reply

    monkeypatch.setattr(rest, "integrations_update", over_the_network)
    first, second = await asyncio.gather(confirm(b), confirm(a))
    assert sorted([first.outcome, second.outcome]) == ["applying", "changed"], (first.text, second.text)
    assert a.writes() == 2  # the two members of #alerts that were on, each once
    rows = [r for r in await a.services.state.history() if r.action == "disable"]
    assert sorted(r.integration_name for r in rows) == ["Deploy announcer", "Grafana"]
    again = await a.say("admin", "ops", f"!integration confirm {code}")
    assert again.outcome == "applied"
