"""The per-integration lock: one holder at a time per id, re-entrant for its holder, and read
marks that say whether anybody held it since a read began."""

from __future__ import annotations

import asyncio

import pytest

from bot.integrations.locks import LocalIntegrationLocks


async def test_holders_of_one_integration_take_turns_and_other_integrations_do_not_wait() -> None:
    locks = LocalIntegrationLocks()
    events: list[str] = []
    release = asyncio.Event()

    async def first() -> None:
        async with locks.hold("a"):
            events.append("first in")
            await release.wait()
            events.append("first out")

    async def second() -> None:
        async with locks.hold("a"):
            events.append("second in")

    async def other() -> None:
        async with locks.hold("b"):
            events.append("other in")

    tasks = [asyncio.create_task(first())]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(second()), asyncio.create_task(other())]
    await asyncio.sleep(0.01)
    assert events == ["first in", "other in"] and locks.locked("a")
    release.set()
    await asyncio.gather(*tasks)
    assert events == ["first in", "other in", "first out", "second in"]
    assert not locks.locked("a") and locks._locks == {}  # nothing kept once nobody holds or waits


async def test_the_holder_may_take_it_again_without_deadlock() -> None:
    locks = LocalIntegrationLocks()
    async with locks.hold("a"), locks.hold("a"):
        assert locks.locked("a")
    assert not locks.locked("a")


async def test_a_read_is_untouched_only_if_nobody_released_the_lock_after_its_mark() -> None:
    locks = LocalIntegrationLocks()
    async with locks.hold("a"):
        pass  # an earlier writer, done before the read
    mark = locks.mark()
    async with locks.hold("b"):
        pass  # a writer of another integration does not matter
    async with locks.hold("a") as held:
        assert held.untouched_since(mark)
    async with locks.hold("a") as held:
        assert not held.untouched_since(mark)  # the previous holder released after the mark


async def test_a_holder_busy_while_the_read_ran_counts_as_a_change() -> None:
    locks = LocalIntegrationLocks()
    started, finish = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with locks.hold("a"):
            started.set()
            await finish.wait()

    task = asyncio.create_task(writer())
    await started.wait()
    mark = locks.mark()  # the read begins while the writer holds the lock
    finish.set()
    await task
    async with locks.hold("a") as held:
        assert not held.untouched_since(mark)


async def test_a_waiter_cancelled_while_waiting_leaves_the_lock_usable() -> None:
    locks = LocalIntegrationLocks()
    async with locks.hold("a"):
        waiter = asyncio.create_task(_take(locks, "a"))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    async with locks.hold("a"):
        assert locks.locked("a")
    assert locks._locks == {}


async def _take(locks: LocalIntegrationLocks, integration_id: str) -> None:
    async with locks.hold(integration_id):
        pass
