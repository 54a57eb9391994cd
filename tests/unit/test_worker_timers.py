"""The worker's timer heap loses its cancelled entries and stays a heap."""

from __future__ import annotations

import heapq
import time

from kombu.asynchronous.timer import Timer

from workers.timers import drop_cancelled, keep_compact


def test_it_drops_cancelled_timers_and_keeps_the_rest_in_due_order() -> None:
    timer = Timer()
    entries = [timer.call_after(100 + i, lambda: None) for i in range(1000)]
    for entry in entries[::3]:
        entry.cancel()
    kept = [e for e in entries if not e.canceled]

    assert drop_cancelled(timer._queue) == 334
    assert len(timer._queue) == len(kept) == 666
    assert [item[2] for item in sorted(timer._queue)] == kept
    assert [heapq.heappop(timer._queue)[2] for _ in range(3)] == kept[:3]


def test_it_leaves_a_heap_without_cancelled_timers_untouched() -> None:
    timer = Timer()
    timer.call_after(5, lambda: None)
    queue = timer._queue
    assert drop_cancelled(queue) == 0
    assert timer._queue is queue and len(queue) == 1


def test_it_compacts_from_the_timer_itself_while_the_timer_runs() -> None:
    class Hub:
        def __init__(self) -> None:
            self.timer = Timer()

        def call_repeatedly(self, delay: float, callback: object) -> object:
            return self.timer.call_repeatedly(delay, callback)

    hub = Hub()
    dead = [hub.timer.call_after(600, lambda: None) for _ in range(50)]
    for entry in dead:
        entry.cancel()
    keep_compact(hub, every_seconds=0.01)
    time.sleep(0.02)
    # Drive the timer as the event loop does: run what is due.
    scheduler = iter(hub.timer)
    for _ in range(10):
        _, entry = next(scheduler)
        if entry is not None:
            entry()
    assert all(not item[2].canceled for item in hub.timer._queue)
    assert len(hub.timer._queue) == 1  # only the repeating compaction itself
