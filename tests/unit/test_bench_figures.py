"""The figures the benchmarks print: hand-off times, percentiles and starts
out of request order (bench/figures.py)."""

from __future__ import annotations

import math

import pytest

from bench.figures import handoffs, out_of_order, percentile


def test_it_interpolates_a_percentile_between_ranks() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([10.0, 0.0, 5.0], 50) == 5.0


def test_it_gives_the_extremes_at_0_and_100() -> None:
    assert percentile([3.0, 1.0, 2.0], 0) == 1.0
    assert percentile([3.0, 1.0, 2.0], 100) == 3.0


def test_it_reads_p99_near_the_top_of_a_long_tail() -> None:
    values = [1.0] * 99 + [100.0]
    assert percentile(values, 99) == pytest.approx(1.99)


def test_it_has_no_percentile_of_nothing() -> None:
    assert math.isnan(percentile([], 50))


def test_it_refuses_a_percentile_outside_0_to_100() -> None:
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_it_measures_each_hand_off_to_the_next_start() -> None:
    assert handoffs([1.0, 2.0], [1.25, 2.5]) == [0.25, 0.5]


def test_it_ignores_starts_before_any_release() -> None:
    # The first starts took slots that were free: nobody handed them over.
    assert handoffs([5.0], [0.0, 0.1, 5.5]) == [0.5]


def test_it_gives_each_start_to_one_release_only() -> None:
    # Two slots freed a moment apart: the second waits for the second start.
    assert handoffs([1.0, 1.5], [2.0, 3.0]) == [1.0, 1.5]


def test_it_has_no_hand_off_for_a_release_nobody_started_after() -> None:
    assert handoffs([1.0, 2.0, 3.0], [1.5]) == [0.5]


def test_it_counts_a_start_at_the_very_moment_of_release() -> None:
    assert handoffs([1.0], [1.0]) == [0.0]


def test_it_sorts_releases_and_starts_itself() -> None:
    assert handoffs([2.0, 1.0], [2.5, 1.25]) == [0.25, 0.5]


def test_it_skips_a_release_with_nobody_waiting() -> None:
    # The execution that started at 9.0 arrived at 8.0, long after the slot
    # freed at 1.0: that wait was an empty queue, not a hand-off.
    assert handoffs([1.0, 8.5], [9.0], queued=[8.0]) == [0.5]


def test_it_lets_a_later_arrival_answer_a_later_release() -> None:
    # The start at 3.0 arrived too late for the release at 1.0 but was
    # waiting by the release at 2.0; the one at 1.5 was waiting all along.
    assert handoffs([1.0, 2.0], [1.5, 3.0], queued=[0.0, 1.9]) == [0.5, 1.0]


def test_it_needs_one_queue_time_per_start() -> None:
    with pytest.raises(ValueError):
        handoffs([1.0], [1.5, 2.0], queued=[0.0])


def test_it_counts_no_start_out_of_order_in_request_order() -> None:
    assert out_of_order([0, 1, 2, 3]) == 0
    assert out_of_order([]) == 0


def test_it_counts_each_start_behind_a_later_request() -> None:
    # 1 and 2 start after 3 had: two out of order; 4 is in order again.
    assert out_of_order([0, 3, 1, 2, 4]) == 2


def test_it_counts_a_swapped_pair_once() -> None:
    assert out_of_order([1, 0, 2, 3]) == 1


def test_it_counts_everything_after_the_last_request_started_first() -> None:
    assert out_of_order([9, 0, 1, 2]) == 3


def test_it_takes_any_increasing_numbering() -> None:
    # Queue seqs need not start at 0 nor be contiguous.
    assert out_of_order([101, 105, 103, 110]) == 1
