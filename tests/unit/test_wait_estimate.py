"""The estimated wait of a queued execution, from its place in line and
the action's recent throughput."""

from __future__ import annotations

import pytest

from queues.services import estimate_wait_seconds


def test_it_multiplies_the_place_in_line_by_the_time_per_finish() -> None:
    # 30 finished in the last 60 s: a slot frees every 2 s.
    assert estimate_wait_seconds(5, finished=30, span_seconds=60) == 10.0


def test_it_is_unknown_without_recent_throughput() -> None:
    assert estimate_wait_seconds(3, finished=0, span_seconds=0) is None


@pytest.mark.parametrize("position", [None, 0, -1])
def test_it_is_unknown_for_an_execution_not_in_line(position: int | None) -> None:
    assert estimate_wait_seconds(position, finished=10, span_seconds=10) is None


def test_it_does_not_read_an_absurd_rate_into_a_single_recent_finish() -> None:
    # One finish a millisecond ago is at most one per second, not a thousand.
    assert estimate_wait_seconds(4, finished=1, span_seconds=0.001) == 4.0


def test_it_rounds_to_a_tenth_of_a_second() -> None:
    assert estimate_wait_seconds(1, finished=3, span_seconds=10) == 3.3
