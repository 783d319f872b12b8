"""Which replica claims a caller's commands first (bot/runtime/homes.py): every replica reading
the same list of replicas alive finds the same home for a caller, exactly one; a replica that
comes or goes moves only the callers it takes or leaves; a replica not on its own list (before
its first look, the database away) claims everything itself, as a lone replica does."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from bot.runtime.homes import Homes

owners = st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=6, unique=True)
callers = st.lists(st.text(max_size=17), min_size=1, max_size=40, unique=True)


def homes_of(alive: list[str]) -> list[Homes]:
    replicas = [Homes(owner) for owner in alive]
    for homes in replicas:
        homes.update(alive)
    return replicas


@given(owners, callers)
def test_every_caller_has_exactly_one_home_among_replicas_with_the_same_list(
    alive: list[str], users: list[str]
) -> None:
    replicas = homes_of(alive)
    for user in users:
        assert sum(homes.mine(user) for homes in replicas) == 1
        assert len({homes.home_of(user) for homes in replicas}) == 1


@given(owners, callers, st.text(min_size=1, max_size=12))
def test_a_replica_that_comes_or_goes_moves_only_its_own_callers(
    alive: list[str], users: list[str], newcomer: str
) -> None:
    if newcomer in alive:
        return
    before = homes_of(alive)[0]
    after = homes_of([*alive, newcomer])[0]
    for user in users:
        assert after.home_of(user) in (before.home_of(user), newcomer)
    if len(alive) > 1:
        gone = alive[-1]
        fewer = homes_of(alive[:-1])[0]
        for user in users:
            if before.home_of(user) != gone:
                assert fewer.home_of(user) == before.home_of(user)


def test_callers_are_shared_out_evenly_enough() -> None:
    replicas = homes_of(["host/1/aa", "host/2/bb", "host/3/cc"])
    homes = Counter(replicas[0].home_of(f"user{n}") for n in range(3000))
    assert set(homes) == {"host/1/aa", "host/2/bb", "host/3/cc"}
    assert min(homes.values()) > 800  # a third each, give or take


def test_a_replica_not_on_its_own_list_claims_everything() -> None:
    homes = Homes("me")
    assert homes.mine("anyone") and not homes.shared()
    homes.update(["other", "third"])  # its own saying-so has not been stored yet
    assert homes.mine("anyone") and not homes.shared()
    homes.update(["me"])  # alone
    assert homes.mine("anyone") and not homes.shared()
    homes.update(["me", "other"])
    assert homes.shared()
    assert {homes.mine(f"user{n}") for n in range(50)} == {True, False}
