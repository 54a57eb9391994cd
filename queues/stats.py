"""Persisting the live queue counters into queue_stats, cheaply.

Writing the row on every admit, grant and release would put a database
write on the hot path of every execution. Instead a flusher reads every
queue's counters in one Redis round trip, compares each queue's
``updated_ms`` (stamped by the Lua scripts on every state change) with what
the row holds, and upserts only the queues that moved, in one statement. A
queue changing a thousand times a second is still written at most once per
pass.

One flusher acts at a time across the fleet, held by a Redis lock with a
TTL: each worker's main process runs a flusher thread, the holder renews
the lock every pass, and if it dies another takes over once the lock
expires. Passes run every half ``ATTUNE_STATS_FLUSH_INTERVAL_SECONDS`` so
that a row lags its queue by at most that interval, the pass's own
duration included.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Count, Min, Q
from django.utils import timezone
from redis.exceptions import LockError
from redis.lock import Lock

from executions.models import ACTIVE_STATUSES, TERMINAL_STATUSES, Action, Execution, ExecutionStatus
from queues.gate import QueueSnapshot, get_gate
from queues.keys import QueueRef, lock_key
from queues.models import QueueStats
from queues.policy import resolve_many

logger = logging.getLogger(__name__)
S = ExecutionStatus
LOCK_NAME = "stats-flush"
# A dead holder's lock must expire soon enough for another flusher to take
# over, yet outlive any pass the holder is still making.
MIN_LOCK_TTL_SECONDS = 3.0
PASSES_PER_INTERVAL = 2
# Actions counted per query by rebuild(): each chunk is one aggregate over
# their executions and one upsert, so a rebuild of many actions shows
# progress and never sends one IN list of every action.
REBUILD_CHUNK = 500


@dataclass
class FlushReport:
    """What one pass did. ``ran`` is False when another process holds the lock."""

    ran: bool = True
    queues: int = 0
    written: list[QueueRef] = field(default_factory=list)
    without_state: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        if not self.ran:
            return "another process is flushing queue stats; nothing done"
        return (
            f"{self.queues} queues read, {len(self.written)} rows written, "
            f"{self.without_state} without live state, in {self.seconds * 1000:.1f} ms"
        )


def _from_ms(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, tz=UTC)


def row_from_snapshot(snapshot: QueueSnapshot) -> QueueStats:
    """The queue_stats row that mirrors one live snapshot."""
    assert snapshot.updated_ms is not None
    return QueueStats(
        action_id=snapshot.queue.action_id,
        group=snapshot.queue.group,
        queue_length=snapshot.waiting,
        active_count=snapshot.active,
        max_concurrent=snapshot.limit,
        oldest_enqueued_at=_from_ms(snapshot.oldest_enqueued_ms),
        total_enqueued=snapshot.total_enqueued,
        total_completed=snapshot.total_completed,
        total_terminal=snapshot.total_terminal,
        last_updated=_from_ms(snapshot.updated_ms),
    )


def needs_write(row: QueueStats, stored: tuple[datetime, int | None] | None) -> bool:
    """Whether ``row`` (from a snapshot) says more than the stored
    (last_updated, max_concurrent). A limit change alone moves no counter
    and no timestamp, so the limit is compared too."""
    if stored is None:
        return True
    stored_updated, stored_limit = stored
    if row.last_updated > stored_updated:
        return True
    return row.last_updated == stored_updated and row.max_concurrent != stored_limit


def flush_once() -> FlushReport:
    """Read every queue's live counters (every group of every action) and
    write the rows that changed.

    Takes no lock: callers that may run beside another flusher rely on the
    upsert's newer-only guard. Queues without live state (never used, or
    Redis lost them and reconciling has not run yet) keep their row.
    """
    started = time.monotonic()
    action_ids = list(Action.objects.order_by("pk").values_list("pk", flat=True))
    snapshots = [
        snapshot for groups in get_gate().group_snapshots(action_ids).values() for snapshot in groups
    ]
    stored = {
        (action_id, group): (last_updated, limit)
        for action_id, group, last_updated, limit in QueueStats.objects.values_list(
            "action_id", "group", "last_updated", "max_concurrent"
        )
    }
    report = FlushReport(queues=len(snapshots))
    changed = []
    for snapshot in snapshots:
        if not snapshot.exists or snapshot.updated_ms is None:
            report.without_state += 1
            continue
        row = row_from_snapshot(snapshot)
        if needs_write(row, stored.get((row.action_id, row.group))):
            changed.append(row)
    QueueStats.objects.batch_upsert(changed, only_newer=True)
    report.written = [QueueRef(row.action_id, row.group) for row in changed]
    report.seconds = time.monotonic() - started
    return report


def counts_from_database(actions: list[Action]) -> list[QueueStats]:
    """Each queue's row computed from the executions table (one per group
    of an action), for the actions that have any execution. This is the
    definition the live counters must agree with at rest."""
    # Like the live counters, count what passed through the gate (has a
    # queue seq): a request cancelled before its gate step never entered.
    gated = Q(queue_seq__isnull=False)
    waiting = gated & Q(status__in=[S.QUEUED, S.REQUESTED])
    by_action: dict[int, list[dict[str, Any]]] = {}
    for row in (
        Execution.objects.filter(action__in=actions)
        .values("action_id", "queue_group")
        .annotate(
            queue_length=Count("pk", filter=waiting),
            active_count=Count("pk", filter=Q(status__in=ACTIVE_STATUSES)),
            oldest_enqueued_at=Min("enqueued_at", filter=waiting),
            total_enqueued=Count("pk", filter=gated),
            total_completed=Count("pk", filter=gated & Q(status=S.COMPLETED)),
            total_terminal=Count("pk", filter=gated & Q(status__in=TERMINAL_STATUSES)),
        )
        .order_by("queue_group")
    ):
        by_action.setdefault(row["action_id"], []).append(row)
    now = timezone.now()
    policies = resolve_many(actions)
    rows = []
    for action in actions:
        for counts in by_action.get(action.pk, []):
            rows.append(
                QueueStats(
                    action=action,
                    group=counts["queue_group"],
                    queue_length=counts["queue_length"],
                    active_count=counts["active_count"],
                    max_concurrent=policies[action.pk].limit,
                    oldest_enqueued_at=counts["oldest_enqueued_at"] if counts["queue_length"] else None,
                    total_enqueued=counts["total_enqueued"],
                    total_completed=counts["total_completed"],
                    total_terminal=counts["total_terminal"],
                    last_updated=now,
                )
            )
    return rows


def rebuild(
    actions: list[Action] | None = None, *, progress: Callable[[int, int], None] | None = None
) -> list[QueueStats]:
    """Recompute rows from the executions table and overwrite them; returns
    the rows written. The rows then stand until their queue next changes,
    when the flusher writes the live counters again.

    Works through the actions REBUILD_CHUNK at a time (one count and one
    upsert each), calling ``progress(actions done, total)`` before the
    first chunk and after each."""
    if actions is None:
        actions = list(Action.objects.select_related("pack").order_by("pk"))
    rows: list[QueueStats] = []
    if progress is not None:
        progress(0, len(actions))
    for start in range(0, len(actions), REBUILD_CHUNK):
        chunk = actions[start : start + REBUILD_CHUNK]
        chunk_rows = counts_from_database(chunk)
        QueueStats.objects.batch_upsert(chunk_rows)
        rows.extend(chunk_rows)
        if progress is not None:
            progress(start + len(chunk), len(actions))
    return rows


class StatsFlusher:
    """Runs flush passes on a fixed cadence while it holds the fleet-wide lock."""

    def __init__(self, interval_seconds: float | None = None) -> None:
        interval = float(
            settings.ATTUNE_STATS_FLUSH_INTERVAL_SECONDS if interval_seconds is None else interval_seconds
        )
        self.period = interval / PASSES_PER_INTERVAL
        self.lock_ttl = max(MIN_LOCK_TTL_SECONDS, interval * 5)
        self._lock: Lock | None = None
        self._owned = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _hold_lock(self) -> bool:
        if self._lock is None:
            self._lock = get_gate().redis.lock(
                lock_key(LOCK_NAME), timeout=self.lock_ttl, blocking=False, thread_local=False
            )
        if self._owned:
            try:
                self._lock.reacquire()
                return True
            except LockError:  # it expired (a long stall) and may be someone else's now
                self._owned = False
        self._owned = bool(self._lock.acquire(blocking=False))
        return self._owned

    def run_pass(self) -> FlushReport:
        """One pass: flush if this flusher holds (or can take) the lock."""
        if not self._hold_lock():
            return FlushReport(ran=False)
        return flush_once()

    def release(self) -> None:
        if self._lock is not None and self._owned:
            self._owned = False
            # It expired after a stall: someone else may hold it now, and that is fine.
            with contextlib.suppress(LockError):
                self._lock.release()

    def run_forever(self) -> None:
        """Pass until stop() is called; errors are logged and the next pass retries."""
        next_pass = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    report = self.run_pass()
                    if report.written:
                        logger.debug("queue stats flushed: %s", report)
                except Exception:  # Redis or the database briefly away: the next pass catches up
                    logger.exception("queue stats flush failed")
                finally:
                    close_old_connections()
                next_pass += self.period
                # After a stall, pass at once rather than running a burst of catch-up passes.
                next_pass = max(next_pass, time.monotonic())
                self._stop.wait(next_pass - time.monotonic())
        finally:
            self.release()
            connection.close()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name="queue-stats-flusher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)


_worker_flusher: StatsFlusher | None = None


def start_worker_flusher() -> StatsFlusher | None:
    """Start this process's flusher thread unless persistence is switched off."""
    global _worker_flusher
    if not settings.ATTUNE_STATS_FLUSH_ENABLED or _worker_flusher is not None:
        return _worker_flusher
    _worker_flusher = StatsFlusher()
    _worker_flusher.start()
    return _worker_flusher


def stop_worker_flusher() -> None:
    global _worker_flusher
    if _worker_flusher is not None:
        _worker_flusher.stop()
        _worker_flusher = None
