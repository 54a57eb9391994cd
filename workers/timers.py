"""Keeps the worker's timer queue from growing with every task.

For each task with a time limit, the prefork pool schedules a timer on the
worker's event loop and cancels it when the task ends. A cancelled timer is
only flagged, not removed: it stays in the timer heap until its due time,
the task's whole time limit later (celery/celery#1129, #5200). Every
execution carries its action's timeout (600 s by default), so a worker
running 300 executions a second would hold some 180,000 dead timers, about
100 MiB, and more the longer its actions' timeouts. Dropping the cancelled
ones every few seconds keeps the heap at the timers still due.
"""

from __future__ import annotations

import heapq
import logging
from typing import Any

logger = logging.getLogger(__name__)
COMPACT_EVERY_SECONDS = 10.0


def drop_cancelled(queue: list[Any]) -> int:
    """Remove the cancelled entries of a kombu timer heap in place, keeping
    it a heap; returns how many were removed."""
    live = [item for item in queue if not item[2].canceled]
    removed = len(queue) - len(live)
    if removed:
        # In place: the timer's own iterator holds this very list.
        queue[:] = live
        heapq.heapify(queue)
    return removed


def keep_compact(hub: Any, every_seconds: float = COMPACT_EVERY_SECONDS) -> None:
    """Drop cancelled timers from ``hub``'s heap every ``every_seconds``.
    Runs as one of the hub's own timers, so it never races the event loop."""
    timer = getattr(hub, "timer", None)
    if timer is None or not hasattr(timer, "_queue"):
        logger.warning("the worker's event loop has no timer heap to compact; left as it is")
        return
    hub.call_repeatedly(every_seconds, lambda: drop_cancelled(timer._queue))
