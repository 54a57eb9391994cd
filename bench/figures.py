"""The figures the benchmarks print, as pure functions over recorded times,
so what a figure means is pinned down by tests/unit/test_bench_figures.py."""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of ``values``, interpolated between the
    two nearest ranks as numpy does by default; NaN when there are none."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0 and 100, got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def handoffs(releases: list[float], starts: list[float], *, queued: list[float] | None = None) -> list[float]:
    """For each release (a completion that freed a slot), the time until the
    next start at or after it: the slot's hand-off.

    Each start answers one release at most: with two slots freed a moment
    apart, the second release waits for the second start, not the first.
    ``queued`` gives, for each start, when that execution joined the queue;
    a start whose execution arrived after the release is then no answer to
    it, because nobody was waiting and the idle time is not a hand-off. A
    release that no start answers (the last ones of a run) has no hand-off.
    """
    if queued is not None and len(queued) != len(starts):
        raise ValueError("queued needs one time per start")
    arrivals = queued if queued is not None else [-math.inf] * len(starts)
    by_arrival = sorted(zip(arrivals, starts, strict=True))
    # Starts whose execution was waiting by the current release, earliest start first.
    candidates: list[float] = []
    arrived = 0
    result: list[float] = []
    for release in sorted(releases):
        while arrived < len(by_arrival) and by_arrival[arrived][0] <= release:
            heapq.heappush(candidates, by_arrival[arrived][1])
            arrived += 1
        # A start before this release answers none of the later ones either.
        while candidates and candidates[0] < release:
            heapq.heappop(candidates)
        if candidates:
            result.append(heapq.heappop(candidates) - release)
    return result


def out_of_order(start_order: list[int]) -> int:
    """How many executions started after some later-requested execution had
    already started. ``start_order`` holds request positions (any increasing
    numbering: index, queue seq) in the order the executions started."""
    highest = -math.inf
    late = 0
    for position in start_order:
        if position < highest:
            late += 1
        else:
            highest = position
    return late
