"""The followup FSM: the derived table agrees with the python-statemachine definition."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statemachine.exceptions import TransitionNotAllowed

import fsm.followup as ff
from fsm.followup import (
    CAPTURE,
    CAPTURING,
    DONE,
    EVENTS,
    FINAL_STATES,
    FOLLOWUP_TABLE,
    MISS,
    MISSED,
    SCHEDULED,
    FollowupMachine,
    InvalidFollowupTransition,
    next_state,
)


def test_table_shape() -> None:
    assert len(FOLLOWUP_TABLE) == 16  # 2 live states x 2 events x 2 x 2
    assert {k[0] for k in FOLLOWUP_TABLE} == {SCHEDULED, CAPTURING}
    assert not any(k[0] in FINAL_STATES for k in FOLLOWUP_TABLE)


def test_known_transitions() -> None:
    assert next_state(SCHEDULED, CAPTURE, False, False) == CAPTURING
    assert next_state(CAPTURING, CAPTURE, True, False) == DONE
    assert next_state(CAPTURING, CAPTURE, True, True) == MISSED
    assert next_state(SCHEDULED, MISS, True, False) == MISSED
    assert next_state(CAPTURING, MISS, False, True) == CAPTURING
    assert next_state(SCHEDULED, CAPTURE, True, False) == DONE  # a single offset


@pytest.mark.parametrize("final", sorted(FINAL_STATES))
@pytest.mark.parametrize("event", EVENTS)
def test_events_after_final_are_rejected_by_both(final: str, event: str) -> None:
    for is_last in (False, True):
        for had_miss in (False, True):
            with pytest.raises(InvalidFollowupTransition):
                next_state(final, event, is_last, had_miss)
            sm = ff.machine_in(final)
            with pytest.raises(TransitionNotAllowed):
                sm.send(event, is_last=is_last, had_miss=had_miss)


def test_docstring_has_a_mermaid_diagram() -> None:
    assert ff.__doc__ is not None
    assert "```mermaid" in ff.__doc__ and "stateDiagram-v2" in ff.__doc__


steps = st.lists(st.tuples(st.sampled_from(EVENTS), st.booleans(), st.booleans()), max_size=12)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_table_agrees_with_machine_on_arbitrary_sequences(
    seq: list[tuple[str, bool, bool]],
) -> None:
    """Arbitrary (event, is_last, had_miss) sequences: same states, same rejections."""
    sm = FollowupMachine()
    state = SCHEDULED
    for event, is_last, had_miss in seq:
        try:
            sm.send(event, is_last=is_last, had_miss=had_miss)
            machine_ok = True
        except TransitionNotAllowed:
            machine_ok = False
        try:
            state = next_state(state, event, is_last, had_miss)
            table_ok = True
        except InvalidFollowupTransition:
            table_ok = False
        assert machine_ok == table_ok
        assert sm.state_id == state
        if not machine_ok:
            assert state in FINAL_STATES


@settings(max_examples=300, deadline=None)
@given(
    outcomes=st.lists(st.sampled_from(EVENTS), min_size=1, max_size=6),
    extra=st.lists(st.sampled_from(EVENTS), max_size=3),
)
def test_realistic_lifecycles(outcomes: list[str], extra: list[str]) -> None:
    """One event per offset: DONE iff every offset was captured, else MISSED; then rejects."""
    sm = FollowupMachine()
    state = SCHEDULED
    had_miss = False
    n = len(outcomes)
    for i, event in enumerate(outcomes):
        is_last = i == n - 1
        sm.send(event, is_last=is_last, had_miss=had_miss)
        state = next_state(state, event, is_last, had_miss)
        assert sm.state_id == state
        assert (state in FINAL_STATES) == is_last
        had_miss = had_miss or event == MISS
    assert state == (MISSED if MISS in outcomes else DONE)
    assert sm.is_terminated
    for event in extra:
        with pytest.raises(TransitionNotAllowed):
            sm.send(event, is_last=True, had_miss=had_miss)
        with pytest.raises(InvalidFollowupTransition):
            next_state(state, event, True, had_miss)
