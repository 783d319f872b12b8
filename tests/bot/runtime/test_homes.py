"""Which replica claims a caller's commands first (bot/runtime/homes.py): every replica reading
the same list of replicas alive finds the same home for a caller, exactly one; a replica that
comes or goes moves only the callers it takes or leaves; a replica not on its own list (before
its first look, the database away) claims everything itself, as a lone replica does."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from bot.rocketchat.messages import ChatMessage
from bot.runtime.homes import Homes, Left
from bot.runtime.intake import Accepted

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


# --- the commands left to their homes (`Left`) ---------------------------------------------------

# One step: a command of caller `c` arrives at loop time `t` (home here or not), its home answers
# one of the commands left, or the backup claims of those due by `t` are made.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("arrive"), st.sampled_from("abc"), st.booleans()),
        st.tuples(st.just("answer"), st.integers(0, 30), st.just(False)),
        st.tuples(st.just("claim"), st.just(""), st.just(False)),
    ),
    max_size=40,
)


def _command(number: int, caller: str) -> Accepted:
    now = datetime.now(UTC)
    message = ChatMessage(
        id=f"m{number}", room_id="r", text="!x help", ts=now, updated_at=now, user_id=caller, username=caller
    )
    return Accepted(message, None)


@given(steps, st.integers(1, 50))
def test_a_callers_commands_are_claimed_in_the_order_sent_and_everything_is_forgotten_at_last(
    script: list[tuple[str, str | int, bool]], limit: int
) -> None:
    """Whatever arrives, is answered or comes due: a caller's commands are claimed here in the
    order they were sent (none of theirs claimed at once while an earlier one is left or being
    claimed), unless the limit of commands left was reached (then one is claimed at once rather
    than held: never more than the limit), and once everything is answered or claimed nothing is held."""
    left = Left(limit)
    claimed: list[Accepted] = []  # in the order this replica claims them
    sent: dict[str, list[str]] = {}
    clock, number, overflowed = 0.0, 0, False
    for action, value, mine in script:
        clock += 0.4
        if action == "arrive":
            number += 1
            command = _command(number, str(value))
            sent.setdefault(str(value), []).append(command.message.id)
            full = len(left) >= limit
            if not left.leave(command, mine=mine, due=clock + 1.0, answer_of=lambda i: "answer-" + i):
                claimed.append(command)
                overflowed = overflowed or full
            assert len(left) <= limit
        elif action == "answer":
            if left.answered(f"answer-m{value}") is not None:
                sent = {c: [i for i in ids if i != f"m{value}"] for c, ids in sent.items()}
        else:
            due = left.due(clock)
            claimed.extend(d.accepted for d in due)
            for d in due:
                left.release(d)
    for d in left.due(float("inf")):
        claimed.append(d.accepted)
        left.release(d)
    assert left.empty()
    if overflowed:
        return
    for caller, ids in sent.items():
        theirs = [c.message.id for c in claimed if c.message.user_id == caller]
        assert theirs == [i for i in ids if i in theirs], caller
