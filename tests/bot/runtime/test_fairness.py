"""The scheduling of claimed commands (bot/runtime/fairness.py): per-caller lanes, changes first, a bound."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.runtime.fairness import Job, Lanes


def test_a_flood_runs_a_few_at_a_time_and_another_caller_starts_at_once() -> None:
    lanes = Lanes(per_caller=2, queue=5, reads=16)
    started = [lanes.submit("flooder", change=False)[1] for _ in range(10)]
    assert [len(s) for s in started] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    job, now = lanes.submit("admin", change=True)
    assert now == [job]
    read, now = lanes.submit("alice", change=False)
    assert now == [read]


def test_changes_go_before_waiting_reads_of_the_same_caller() -> None:
    lanes = Lanes(per_caller=1, queue=10, reads=16)
    first, _ = lanes.submit("u", change=False)
    reads = [lanes.submit("u", change=False)[0] for _ in range(3)]
    change, now = lanes.submit("u", change=True)
    assert now == []
    assert lanes.done(first) == [change]
    assert lanes.done(change) == [reads[0]]


def test_reads_are_bounded_over_all_callers_and_changes_are_not() -> None:
    lanes = Lanes(per_caller=2, queue=10, reads=3)
    started = [job for n in range(5) for job in lanes.submit(f"reader{n}", change=False)[1]]
    assert len(started) == 3
    change, now = lanes.submit("admin", change=True)
    assert now == [change]
    # the next read slot goes to a caller who has not been served yet
    assert [j.caller for j in lanes.done(started[0])] == ["reader3"]


def test_beyond_the_queue_a_command_is_marked_overflow_and_a_change_takes_a_reads_place() -> None:
    lanes = Lanes(per_caller=1, queue=2, reads=16)
    running, _ = lanes.submit("u", change=False)
    queued = [lanes.submit("u", change=False)[0] for _ in range(2)]
    extra, _ = lanes.submit("u", change=False)
    assert extra.overflow and not any(j.overflow for j in queued)
    change, _ = lanes.submit("u", change=True)
    assert not change.overflow and queued[1].overflow and not queued[0].overflow
    order = []
    job: Job | None = running
    while job is not None:
        following = lanes.done(job)
        job = following[0] if following else None
        if job is not None:
            order.append(job)
    assert order == [change, queued[0], queued[1], extra]


def test_after_close_nothing_more_starts() -> None:
    lanes = Lanes(per_caller=1, queue=5, reads=16)
    running, _ = lanes.submit("u", change=False)
    lanes.submit("u", change=True)
    lanes.close()
    assert lanes.done(running) == []
    assert lanes.waiting == 1


ops = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.sampled_from(["a", "b", "c", "d"]), st.booleans()),
        st.tuples(st.just("done"), st.integers(min_value=0, max_value=50), st.just(False)),
    ),
    max_size=80,
)


@given(ops, st.integers(min_value=1, max_value=3), st.integers(min_value=0, max_value=4), st.integers(1, 4))
def test_every_job_starts_once_within_the_bounds_changes_first_in_order(
    steps: list[tuple[str, object, bool]], per_caller: int, queue: int, reads: int
) -> None:
    lanes = Lanes(per_caller=per_caller, queue=queue, reads=reads)
    submitted: list[Job] = []
    running: list[Job] = []
    started: list[Job] = []

    def start(jobs: list[Job]) -> None:
        started.extend(jobs)
        running.extend(jobs)
        for caller in {j.caller for j in running}:
            assert sum(1 for j in running if j.caller == caller) <= per_caller
        assert sum(1 for j in running if j.runs_as_read) <= reads

    for op, arg, change in steps:
        if op == "submit":
            job, now = lanes.submit(str(arg), change=change)
            submitted.append(job)
            start(now)
            # At most `queue` commands of one caller wait to run (others are answered "busy").
            waiting = [j for j in submitted if j.caller == job.caller and not j.overflow and j not in started]
            assert len(waiting) <= queue
        elif running:
            start(lanes.done(running.pop(int(str(arg)) % len(running))))
    while running:
        start(lanes.done(running.pop(0)))
    assert sorted(j.seq for j in started) == [j.seq for j in submitted]  # each exactly once
    assert lanes.waiting == 0 and lanes.running == 0
    for caller in {j.caller for j in submitted}:
        mine = [j for j in started if j.caller == caller]
        changes = [j.seq for j in mine if not j.runs_as_read]
        reads_ = [j.seq for j in mine if j.runs_as_read]
        assert changes == sorted(changes) and reads_ == sorted(reads_)  # each kind in arrival order


@given(ops, st.integers(min_value=1, max_value=3), st.integers(min_value=0, max_value=4), st.integers(1, 4))
def test_free_counts_the_changes_that_would_start_at_once(
    steps: list[tuple[str, object, bool]], per_caller: int, queue: int, reads: int
) -> None:
    lanes = Lanes(per_caller=per_caller, queue=queue, reads=reads)
    running: list[Job] = []
    for op, arg, change in steps:
        if op == "submit":
            running.extend(lanes.submit(str(arg), change=change)[1])
        elif running:
            running.extend(lanes.done(running.pop(int(str(arg)) % len(running))))
    free = lanes.free("a")
    for _ in range(free):
        job, now = lanes.submit("a", change=True)
        assert job in now and not job.overflow
    job, now = lanes.submit("a", change=True)
    assert job not in now or job.overflow


def test_with_no_queue_a_command_runs_when_its_caller_has_a_free_slot_and_only_a_waiting_one_is_busy() -> None:
    """Was: `BOT_CALLER_QUEUE=0` (accepted, documented as "commands of one person that may wait")
    answered every command "busy", even one that could have run at once."""
    lanes = Lanes(per_caller=2, queue=0, reads=16)
    first, now = lanes.submit("u", change=True)
    second, later = lanes.submit("u", change=False)
    assert now == [first] and later == [second] and not first.overflow and not second.overflow
    assert lanes.free("u") == 0
    third, _ = lanes.submit("u", change=True)
    assert third.overflow  # it would have had to wait
    assert lanes.done(first) == [third]  # its turn: answered "busy" (`Bot._turn`)
    lanes.done(third)
    assert lanes.free("u") == 1
    fourth, now = lanes.submit("u", change=True)
    assert now == [fourth] and not fourth.overflow


def test_with_no_queue_a_read_that_would_wait_for_the_read_slots_is_busy_and_a_change_is_not() -> None:
    """`BOT_CALLER_QUEUE=0`: none of one person's commands waits. With every read slot taken by
    others, a read of a caller with a free slot of their own would still wait: it is answered
    "busy" when its turn comes, as one beyond their own slots is. A change is not held by the
    read slots: it runs at once, and takes no waiting command's place.
    Was: such reads waited, as many as the caller's slots (with "busy" answers to their next
    commands claiming "commands of yours running" while none ran), and a change arriving then
    turned one of them into a "busy" answer although it needed no place."""
    lanes = Lanes(per_caller=2, queue=0, reads=1)
    lanes.submit("other", change=False)  # the one read slot
    read, now = lanes.submit("u", change=False)
    assert now == [] and read.overflow
    change, now = lanes.submit("u", change=True)
    assert now == [change] and not change.overflow
    assert lanes.free("u") == 1


def test_a_change_that_runs_at_once_takes_no_waiting_reads_place() -> None:
    lanes = Lanes(per_caller=2, queue=1, reads=1)
    lanes.submit("other", change=False)  # the one read slot
    first, now = lanes.submit("u", change=True)
    assert now == [first]
    read, now = lanes.submit("u", change=False)
    assert now == [] and not read.overflow  # waits for a read slot: the one command it may queue
    change, now = lanes.submit("u", change=True)
    assert now == [change] and not read.overflow  # its second slot: it needed no place in the queue
