"""The lifecycle of a timed disable is exactly its transition table."""

from __future__ import annotations

import itertools

import pytest

from bot.state.timer_states import PENDING, TERMINAL, TRANSITIONS, IllegalTransition, TimerEvent, TimerState, next_state


def test_the_drawn_lifecycle() -> None:
    assert next_state(TimerState.SCHEDULED, TimerEvent.CONFIRMED) is TimerState.ACTIVE
    assert next_state(TimerState.SCHEDULED, TimerEvent.ABORTED) is TimerState.CANCELLED
    assert next_state(TimerState.ACTIVE, TimerEvent.EXTENDED) is TimerState.ACTIVE
    assert next_state(TimerState.ACTIVE, TimerEvent.REBASED) is TimerState.ACTIVE
    assert next_state(TimerState.ACTIVE, TimerEvent.RE_ENABLED) is TimerState.EXPIRED
    assert next_state(TimerState.ACTIVE, TimerEvent.ENDED_EARLY) is TimerState.CANCELLED
    assert next_state(TimerState.ACTIVE, TimerEvent.CHANGED_BY_OTHERS) is TimerState.OVERRIDDEN
    assert next_state(TimerState.ACTIVE, TimerEvent.GAVE_UP) is TimerState.FAILED


@pytest.mark.parametrize(("state", "event"), list(itertools.product(TimerState, TimerEvent)))
def test_every_pair_outside_the_table_is_refused(state: TimerState, event: TimerEvent) -> None:
    if (state, event) in TRANSITIONS:
        assert next_state(state, event) is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(IllegalTransition, match=state.value):
            next_state(state, event)


def test_ended_timers_never_move_again_and_only_pending_ones_move() -> None:
    assert set(TimerState) == PENDING | TERMINAL and not PENDING & TERMINAL
    for (state, _event), target in TRANSITIONS.items():
        assert state in PENDING
        assert target is not TimerState.SCHEDULED  # nothing goes back to being set up
    for state in TERMINAL:
        assert all(next_state_refused(state, event) for event in TimerEvent)


def test_a_scheduled_timer_cannot_expire_without_having_been_confirmed() -> None:
    with pytest.raises(IllegalTransition):
        next_state(TimerState.SCHEDULED, TimerEvent.RE_ENABLED)


def next_state_refused(state: TimerState, event: TimerEvent) -> bool:
    try:
        next_state(state, event)
    except IllegalTransition:
        return True
    return False
