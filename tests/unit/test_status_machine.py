from __future__ import annotations

import pytest

from executions.exceptions import IllegalTransition
from executions.models import TERMINAL_STATUSES, TRANSITIONS, ExecutionStatus, check_transition, sources_of

S = ExecutionStatus


def test_it_allows_the_happy_path() -> None:
    for current, new in [
        (S.REQUESTED, S.QUEUED),
        (S.QUEUED, S.SCHEDULED),
        (S.SCHEDULED, S.RUNNING),
        (S.RUNNING, S.COMPLETED),
    ]:
        check_transition(current, new)


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATUSES))
def test_it_lets_nothing_follow_a_terminal_status(terminal: str) -> None:
    for new in S.values:
        with pytest.raises(IllegalTransition, match=f"from '{terminal}' to '{new}'"):
            check_transition(terminal, new)


def test_it_refuses_to_complete_an_execution_that_never_ran() -> None:
    with pytest.raises(IllegalTransition):
        check_transition(S.QUEUED, S.COMPLETED)
    with pytest.raises(IllegalTransition):
        check_transition(S.SCHEDULED, S.COMPLETED)


def test_it_ends_a_canceling_execution_only_as_cancelled_or_abandoned() -> None:
    assert TRANSITIONS[S.CANCELING] == {S.CANCELLED, S.ABANDONED}


def test_it_lists_every_status_that_may_precede_another() -> None:
    assert sources_of(S.RUNNING) == [S.SCHEDULED]
    assert sources_of(S.CANCELLED) == sorted([S.REQUESTED, S.QUEUED, S.SCHEDULED, S.CANCELING])
    assert set(TRANSITIONS) == set(S.values)
