"""`IntegrationService.prefetch`: the first lookup of a command read while the runtime reads the
caller's rights. It must change nothing but the timing: the same answer, the caller's rights
applied to what was read, and no lost update when someone writes between the read and the change."""

from __future__ import annotations

import asyncio
import contextvars

import pytest
from test_integrations_service import ALL, FakeRocketChat, incoming, rights, service_for

from bot.errors import IntegrationNotFound
from bot.integrations.authz import MANAGE_OWN_INCOMING
from bot.integrations.service import IntegrationService


async def read_done(server: FakeRocketChat, endpoint: str, count: int) -> None:
    for _ in range(1000):
        if len(server.endpoint_calls(endpoint)) >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{endpoint} was not read {count} time(s)")


async def test_a_prefetched_lookup_is_not_read_twice() -> None:
    server = FakeRocketChat(incoming("a", "Guggy", alias="old"))
    service = service_for(server)
    service.prefetch("Guggy")
    found = await service.resolve("Guggy", rights=rights(*ALL))
    assert found.id == "a" and found.document["alias"] == "old"
    assert len(server.endpoint_calls("integrations.list")) == 1
    again = await service.resolve("Guggy", rights=rights(*ALL))  # a second lookup reads afresh
    assert again.id == "a" and len(server.endpoint_calls("integrations.list")) == 2


async def test_a_prefetch_of_another_name_is_not_used() -> None:
    server = FakeRocketChat(incoming("a", "Guggy"), incoming("b", "Other"))
    service = service_for(server)
    service.prefetch("Guggy")
    assert (await service.resolve("Other", rights=rights(*ALL))).id == "b"
    # Read by its own name (the other read, unused, is cancelled).
    assert "Other" in [c.url.params["name"] for c in server.endpoint_calls("integrations.list")]


async def test_what_the_caller_may_not_see_stays_unseen_when_prefetched() -> None:
    server = FakeRocketChat(incoming("a", "Theirs"))  # created by someone else
    service = service_for(server)
    service.prefetch("Theirs")
    with pytest.raises(IntegrationNotFound):
        await service.resolve("Theirs", rights=rights(MANAGE_OWN_INCOMING))


async def test_a_write_made_between_the_prefetch_and_the_change_is_kept() -> None:
    server = FakeRocketChat(incoming("a", "Guggy", alias="old", enabled=True))
    service = service_for(server)
    service.prefetch("Guggy")
    await read_done(server, "integrations.list", 1)

    async def someone_else(service: IntegrationService) -> None:  # another command, meanwhile
        found = await service.resolve("Guggy", rights=rights(*ALL))
        await service.apply_changes(found, {"alias": "new"}, rights=rights(*ALL))

    await asyncio.get_running_loop().create_task(someone_else(service), context=contextvars.Context())
    found = await service.resolve("Guggy", rights=rights(*ALL))  # the read made before that write
    assert found.document["alias"] == "old"
    outcome = await service.set_enabled(found, False, rights=rights(*ALL))
    assert outcome.changed
    assert server.docs["a"]["alias"] == "new" and server.docs["a"]["enabled"] is False
    assert len(server.endpoint_calls("integrations.get")) == 1  # read again under the lock
