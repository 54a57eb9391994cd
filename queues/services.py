"""Operator calls on queues: statistics, a waiting execution's place and
expected wait, purging a queue, cancelling in bulk. The API, the admin and
the management commands call these."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import F, Min
from django.utils import timezone

from executions import audit
from executions.exceptions import AttuneError
from executions.models import TERMINAL_STATUSES, WAITING_STATUSES, AuditKind, Execution, ExecutionStatus
from executions.services import cancel_execution, get_action
from queues import dispatch
from queues.exceptions import QueueStatsNotFound
from queues.gate import get_gate
from queues.models import QueueStats, action_total

logger = logging.getLogger(__name__)
S = ExecutionStatus
# How far back the throughput behind a wait estimate looks.
THROUGHPUT_WINDOW_SECONDS = 300.0
# A single recent finish must not suggest an absurd rate.
MIN_THROUGHPUT_SPAN_SECONDS = 1.0


@dataclass(frozen=True)
class ActionQueueStats:
    """One action's persisted queues: ``groups`` has a row per group
    (``default`` first), ``total`` adds them up (queues.models.action_total)."""

    total: QueueStats
    groups: list[QueueStats]


def queue_stats_for(action_ref: str) -> ActionQueueStats:
    """The persisted rows of one action's queues. Raises ActionNotFound, or
    QueueStatsNotFound if none of its queues has been used (or all were cleared)."""
    action = get_action(action_ref)
    rows = QueueStats.objects.for_action(action)
    if not rows:
        raise QueueStatsNotFound(f"No queue statistics available for action '{action.ref}'")
    return ActionQueueStats(action_total(rows), rows)


def list_queue_stats(*, active_only: bool = False) -> list[QueueStats]:
    """Every queue's row (one per group of an action), or only queues with
    work waiting or running; deepest first."""
    rows = QueueStats.objects.list_active() if active_only else QueueStats.objects.list_all()
    return list(rows)


def clear_stale_queue_stats(older_than_seconds: float) -> int:
    """Delete rows of idle queues unchanged for that long; returns how many."""
    return QueueStats.objects.clear_stale(older_than_seconds)


@dataclass(frozen=True)
class WaitingInfo:
    """Why an execution is waiting and for how long, as far as is known."""

    queue_position: int | None = None
    estimated_wait_seconds: float | None = None


def estimate_wait_seconds(position: int | None, finished: int, span_seconds: float) -> float | None:
    """Seconds until the execution at ``position`` (1 = next) starts, if
    slots keep freeing at the observed rate (``finished`` executions over
    ``span_seconds``). None when the rate is unknown."""
    if position is None or position < 1 or finished <= 0:
        return None
    span = max(span_seconds, MIN_THROUGHPUT_SPAN_SECONDS)
    return round(position * span / finished, 1)


def recent_throughput(action_id: int) -> tuple[int, float]:
    """(executions that freed a slot, over how many seconds) in the recent
    window. The span starts at the first such finish, so a queue busy for
    only a minute is not diluted over the whole window."""
    now = timezone.now()
    window_start = now - timedelta(seconds=THROUGHPUT_WINDOW_SECONDS)
    finished = Execution.objects.filter(
        action_id=action_id,
        status__in=TERMINAL_STATUSES,
        scheduled_at__isnull=False,
        completed_at__gte=window_start,
    )
    count = finished.count()
    if not count:
        return 0, 0.0
    first = finished.aggregate(first=Min("completed_at"))["first"] or window_start
    return count, (now - first).total_seconds()


def waiting_info(execution: Execution) -> WaitingInfo:
    """Place in line (1 = next) and estimated wait of a waiting execution;
    empty for any other. Reads the place from the gate, so it is exact now."""
    if execution.status not in WAITING_STATUSES:
        return WaitingInfo()
    position = get_gate().position(dispatch.queue_of(execution), str(execution.pk))
    if position is None:
        return WaitingInfo()
    finished, span = recent_throughput(execution.action_id)
    return WaitingInfo(position, estimate_wait_seconds(position, finished, span))


@dataclass
class PurgeReport:
    action_ref: str
    cancelled: list[str] = field(default_factory=list)
    # Executions that left the queue on their own (granted a slot, timed
    # out) between being listed and being cancelled.
    skipped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.action_ref}: {len(self.cancelled)} waiting executions cancelled, "
            f"{len(self.skipped)} had already left the queue"
        )


def purge_queue(
    action_ref: str, *, by: Any = None, progress: Callable[[int, int], None] | None = None
) -> PurgeReport:
    """Cancel every execution waiting in the action's queue, head first.

    Only waiting executions are touched: one granted a slot meanwhile is
    left to run. Each is a conditional update, so a purge racing a cancel,
    a grant or a timeout ends every execution exactly once. ``by`` is the
    user purging (recorded on each execution and in the audit trail), None
    for a command. ``progress(handled, total)`` is called before each
    execution listed and once all are handled, cancelled or skipped.
    Raises ActionNotFound.
    """
    action = get_action(action_ref)
    report = PurgeReport(action.ref)
    waiting = (
        Execution.objects.filter(action=action, status__in=WAITING_STATUSES)
        .order_by(F("queue_seq").asc(nulls_last=True), "created")
        .values_list("pk", flat=True)
    )
    waiting_ids = list(waiting)
    for handled, execution_id in enumerate(waiting_ids):
        if progress is not None:
            progress(handled, len(waiting_ids))
        cancelled = Execution.objects.transition(
            execution_id,
            S.CANCELLED,
            expected=[S.REQUESTED, S.QUEUED],
            completed_at=timezone.now(),
            error=f"Cancelled: the queue of action '{action.ref}' was purged.",
            cancelled_by_id=by.pk if by is not None and by.is_authenticated else None,
        )
        if not cancelled:
            report.skipped.append(str(execution_id))
            continue
        execution = Execution.objects.get(pk=execution_id)
        # Without a seq the gate never saw it; its admission, still under
        # way, finds it cancelled and takes it back out.
        if execution.queue_seq is not None:
            dispatch.withdraw(execution)
        report.cancelled.append(str(execution_id))
    if progress is not None:
        progress(len(waiting_ids), len(waiting_ids))
    if report.cancelled:
        logger.warning("purged queue %s", report)
    audit.record(
        AuditKind.QUEUE_PURGED,
        action.ref,
        after={"cancelled": len(report.cancelled), "skipped": len(report.skipped)},
        actor=by,
    )
    return report


@dataclass(frozen=True)
class CancelOutcome:
    execution_id: str
    ok: bool
    status: str | None
    message: str


def cancel_executions(execution_ids: list[Any], *, by: Any = None) -> list[CancelOutcome]:
    """Cancel each execution, reporting per execution rather than stopping
    at the first that cannot be cancelled."""
    outcomes = []
    for execution_id in execution_ids:
        try:
            execution = cancel_execution(execution_id, by=by)
        except AttuneError as exc:
            outcomes.append(CancelOutcome(str(execution_id), False, None, str(exc)))
            continue
        verb = "cancelled" if execution.status == S.CANCELLED else "is being cancelled (its worker stops it)"
        outcomes.append(
            CancelOutcome(str(execution.pk), True, execution.status, f"Execution '{execution.pk}' {verb}")
        )
    return outcomes
