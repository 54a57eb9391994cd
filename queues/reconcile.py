"""Rebuild the gate's Redis state from the executions table.

PostgreSQL is the source of truth; Redis can be lost (restart without
persistence, FLUSHALL, failover) and rebuilt from it. Reconciling is
idempotent and safe on a live queue: it only adds what is missing, frees
what the database says has ended, then refills free slots in order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Max, Q
from django.utils import timezone

from executions.exceptions import QueueFull
from executions.models import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    Action,
    Execution,
    ExecutionStatus,
)
from queues import dispatch
from queues.gate import RestoreState, get_gate, order_score
from queues.keys import DEFAULT_GROUP, QueueRef, lock_key
from queues.policy import lease_ms, resolve, resolve_limit

logger = logging.getLogger(__name__)
S = ExecutionStatus
RECONCILE_LOCK_TIMEOUT_SECONDS = 120
RECONCILE_LOCK_WAIT_SECONDS = 60
# A live request goes from commit to its gate step and the record of it in
# milliseconds; one still `requested` without a queue seq after this long was
# left behind by a process that died. Admitting it sooner could race the
# live admission (see admit_stranded_requests).
STRANDED_AFTER_SECONDS = 2.0


@dataclass
class ReconcileReport:
    action_ref: str
    waiting_added: int = 0
    active_added: int = 0
    stale_freed: int = 0
    granted: int = 0
    requested_admitted: int = 0

    def __str__(self) -> str:
        return (
            f"{self.action_ref}: +{self.waiting_added} waiting, +{self.active_added} active, "
            f"{self.stale_freed} stale freed, {self.granted} granted, "
            f"{self.requested_admitted} stranded requests admitted"
        )


def _ms(value: object) -> int:
    return int(value.timestamp() * 1000) if value else 0  # type: ignore[attr-defined]


def _database_state(action: Action) -> dict[str, RestoreState]:
    """Each of the action's queues (groups) as the database has it; the
    default group always, since its state marks the action's as built."""
    executions = Execution.objects.filter(action=action)
    # The counters count what passed through the gate (a queue seq): a
    # request cancelled before its gate step never entered, nor left.
    gated = Q(queue_seq__isnull=False)
    totals = {
        row["queue_group"]: row
        for row in executions.values("queue_group")
        .annotate(
            seq=Max("queue_seq"),
            grant_seq=Max("grant_seq"),
            enqueued=Count("pk", filter=gated),
            terminal=Count("pk", filter=gated & Q(status__in=TERMINAL_STATUSES)),
            completed=Count("pk", filter=gated & Q(status=S.COMPLETED)),
        )
        .order_by()
    }
    # An execution left `requested` but holding a seq was admitted and its
    # process died before recording `queued`: it waits like the others.
    waiting = (
        executions.filter(status__in=[S.QUEUED, S.REQUESTED], queue_seq__isnull=False)
        .order_by("queue_seq")
        .values_list("queue_group", "pk", "queue_seq", "priority", "enqueued_at", "created")
    )
    active = executions.filter(status__in=ACTIVE_STATUSES).values_list("queue_group", "pk")
    ended = (
        executions.filter(gated, status__in=TERMINAL_STATUSES)
        .values_list("queue_group", "status")
        .annotate(count=Count("pk"))
        .values_list("queue_group", "status", "count")
        .order_by()
    )
    limit = resolve_limit(action)
    states: dict[str, RestoreState] = {}
    for group in sorted({DEFAULT_GROUP, *totals}):
        row = totals.get(group, {})
        states[group] = RestoreState(
            limit=limit,
            seq=row.get("seq") or 0,
            grant_seq=row.get("grant_seq") or 0,
            total_enqueued=row.get("enqueued", 0),
            total_terminal=row.get("terminal", 0),
            total_completed=row.get("completed", 0),
            waiting=[],
            active=[],
            terminal_by_status=dict.fromkeys(sorted(TERMINAL_STATUSES), 0),
        )
    for group, pk, seq, priority, enqueued_at, created in waiting:
        states[group].waiting.append((str(pk), order_score(priority, seq), _ms(enqueued_at or created)))
    for group, pk in active:
        states[group].active.append(str(pk))
    for group, status, count in ended:
        states[group].terminal_by_status[str(status)] = int(count)
    return states


def _free_stale(action: Action, queue: QueueRef) -> int:
    """Free Redis entries whose execution has ended or no longer exists."""
    gate = get_gate()
    in_redis = set(gate.waiting_ids(queue)) | set(gate.active_ids(queue))
    if not in_redis:
        return 0
    live = set(
        str(pk)
        for pk in Execution.objects.filter(pk__in=in_redis)
        .exclude(status__in=TERMINAL_STATUSES)
        .values_list("pk", flat=True)
    )
    freed = 0
    for execution_id in in_redis - live:
        execution = Execution.objects.filter(pk=execution_id).first()
        if execution is None:
            dispatch.forget(queue, execution_id)
        else:
            dispatch.withdraw(execution)
        freed += 1
    return freed


def _restore_rate_window(action: Action) -> None:
    """Put back the grants within the action's longest rate window, so a
    Redis loss does not let a burst past its rate limits."""
    rate_limits = resolve(action).rate_limits
    if not rate_limits:
        return
    longest_ms = max(window_ms for _, window_ms in rate_limits)
    since = timezone.now() - timedelta(milliseconds=longest_ms)
    granted = Execution.objects.filter(action=action, scheduled_at__gte=since).values_list(
        "pk", "scheduled_at"
    )
    get_gate().restore_starts(action.pk, [(str(pk), _ms(at)) for pk, at in granted])


def stranded_after_seconds() -> float:
    return min(STRANDED_AFTER_SECONDS, float(settings.ATTUNE_REAPER_INTERVAL_SECONDS))


def admit_stranded_requests(action: Action, *, older_than_seconds: float) -> int:
    """Admit, in request order, executions committed as `requested` whose
    gate step never happened (the process died between commit and Redis).

    ``older_than_seconds`` is the grace given to a live admission: one that
    passed the gate and whose execution then ended and left the gate before
    its queue seq was recorded would otherwise be let through a second time.
    """
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    stranded = Execution.objects.filter(
        action=action, status=S.REQUESTED, queue_seq__isnull=True, created__lt=cutoff
    ).order_by("created", "pk")
    admitted = 0
    # One at a time: a queue too full for all of them rejects only those
    # that do not fit, not the whole lot.
    for execution in stranded.select_related("action__pack"):
        try:
            dispatch.admit([execution], action)
        except QueueFull:
            logger.warning("stranded execution %s rejected: queue full", execution.pk)
        admitted += 1
    return admitted


def reconcile_action(action: Action, *, admit_requested: bool = True) -> ReconcileReport:
    """Make one action's Redis state agree with the database."""
    gate = get_gate()
    report = ReconcileReport(action.ref)
    lock = gate.redis.lock(
        lock_key(f"reconcile:{action.pk}"),
        timeout=RECONCILE_LOCK_TIMEOUT_SECONDS,
        blocking_timeout=RECONCILE_LOCK_WAIT_SECONDS,
    )
    with lock:
        for group, state in _database_state(action).items():
            queue = QueueRef(action.pk, group)
            waiting_added, active_added = gate.restore(queue, state, lease_ms=lease_ms())
            report.waiting_added += waiting_added
            report.active_added += active_added
        _restore_rate_window(action)
        for group in gate.groups([action.pk])[action.pk]:
            report.stale_freed += _free_stale(action, QueueRef(action.pk, group))
        report.granted = dispatch.refill(action)
    if admit_requested:
        report.requested_admitted = admit_stranded_requests(
            action, older_than_seconds=stranded_after_seconds()
        )
    if report.waiting_added or report.active_added or report.stale_freed or report.requested_admitted:
        logger.warning("reconciled %s", report)
    return report


def reconcile_all(
    *, admit_requested: bool = True, progress: Callable[[int, int], None] | None = None
) -> list[ReconcileReport]:
    """Reconcile every action, in id order; ``progress(done, total)`` is
    called before the first and after each one."""
    actions = list(Action.objects.select_related("pack").order_by("pk"))
    reports = []
    if progress is not None:
        progress(0, len(actions))
    for action in actions:
        reports.append(reconcile_action(action, admit_requested=admit_requested))
        if progress is not None:
            progress(len(reports), len(actions))
    return reports


def reconcile_missing() -> list[ReconcileReport]:
    """Reconcile only the actions whose Redis state is gone; cheap enough to
    run at every worker start and reaper pass."""
    actions = list(Action.objects.select_related("pack").order_by("pk"))
    snapshots = get_gate().snapshots([QueueRef(action.pk) for action in actions])
    return [
        reconcile_action(action)
        for action, snapshot in zip(actions, snapshots, strict=True)
        if not snapshot.exists
    ]
