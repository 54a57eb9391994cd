"""The reaper: takes back what dead or stuck processes left behind.

One pass, under a fleet-wide Redis lock so only one reaper acts at a time:
- rebuilds queues whose Redis state is missing;
- reclaims expired leases: a grant whose task never started goes back to
  the head of its queue; a running execution whose worker stopped renewing
  ends ``abandoned``; a slot whose release was lost is freed;
- frees, without waiting for its lease, the slot of an execution that ended
  a while ago but whose release never reached Redis (its primary, or the
  whole cluster, was away when the run ended);
- ends ``timeout`` every execution that waited longer than its action's
  ``queue_timeout_seconds``;
- admits requests whose gate step never happened;
- marks offline the workers whose heartbeat stopped.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from redis.exceptions import LockError, LockNotOwnedError
from redis.lock import Lock

from executions.models import TERMINAL_STATUSES, Action, Execution, ExecutionStatus
from queues import dispatch, metrics
from queues.gate import Gate, get_gate
from queues.keys import QueueRef, lock_key
from queues.policy import resolve
from queues.reconcile import admit_stranded_requests, reconcile_missing, stranded_after_seconds
from workers.models import Worker

logger = logging.getLogger(__name__)
S = ExecutionStatus
# A worker beats every lease/3 s; this many lease periods of silence means
# it is gone, not slow.
WORKER_SILENT_LEASES = 3
# A wake-up task normally runs within milliseconds of its time; one this late
# was lost.
WAKE_GRACE_MS = 1000
# The token this process holds the reaper lock under. Its passes never
# overlap, so a pass finding the lock held under it knows its own earlier
# pass could not release it (Redis, or the lock's primary, was away at the
# end of that pass) and takes it back, rather than every reaper waiting out
# the lock's timeout (a minute) once Redis answers again.
_LOCK_TOKEN = uuid.uuid4().hex


@dataclass
class ReapReport:
    ran: bool = True
    rebuilt: list[str] = field(default_factory=list)
    requeued: int = 0
    abandoned: int = 0
    freed: int = 0
    queue_timeouts: int = 0
    stranded_admitted: int = 0
    # Actions refilled because their rate-limit wake-up was overdue.
    woken: int = 0
    workers_offline: list[str] = field(default_factory=list)


def _reclaim(execution_id: str, queue: QueueRef, action: Action, report: ReapReport) -> None:
    execution = Execution.objects.filter(pk=execution_id).first()
    if execution is None:
        dispatch.forget(queue, execution_id)
        report.freed += 1
        return
    metrics.lease_reclaimed(action.ref)
    if execution.status in TERMINAL_STATUSES:
        dispatch.release(execution)
        report.freed += 1
    elif execution.status in (S.REQUESTED, S.QUEUED, S.SCHEDULED):
        if dispatch.requeue(execution):
            report.requeued += 1
    else:
        dispatch.finish(
            execution_id,
            S.ABANDONED,
            error="The worker running this execution stopped renewing its lease (it died or lost Redis).",
        )
        report.abandoned += 1


def _in_queue_order(execution_ids: list[str]) -> list[str]:
    """Expired leases sorted by queue seq. Each grant put back goes to the
    head and takes the slot just freed, so putting them back in any other
    order would start a later request first."""
    if len(execution_ids) < 2:
        return execution_ids
    rows = Execution.objects.filter(pk__in=execution_ids).values_list("pk", "queue_seq")
    seqs = {str(pk): seq for pk, seq in rows}
    return sorted(execution_ids, key=lambda pk: (seqs.get(pk) is None, seqs.get(pk) or 0))


def _ended_before(execution_ids: set[str], cutoff: datetime) -> dict[str, Execution]:
    """The executions among these that reached a terminal status before
    ``cutoff``, by id."""
    if not execution_ids:
        return {}
    return {
        str(execution.pk): execution
        for execution in Execution.objects.filter(
            pk__in=execution_ids, status__in=TERMINAL_STATUSES, completed_at__lt=cutoff
        )
    }


def _wake_overdue(gate: Gate, actions: list[Action], now_ms: int) -> int:
    """Refill the actions whose rate-limit wake-up is overdue: its task was
    lost with its worker (an ETA task waits in the worker's memory)."""
    pipe = gate.redis.pipeline(transaction=False)
    for action in actions:
        pipe.hget(QueueRef(action.pk).meta, "wake_at")
    overdue = [
        action
        for action, wake_at in zip(actions, pipe.execute(), strict=True)
        if wake_at and int(wake_at) + WAKE_GRACE_MS < now_ms
    ]
    for action in overdue:
        dispatch.wake(action.pk)
    return len(overdue)


def _expire_waiting(action: Action, report: ReapReport) -> None:
    timeout_seconds = resolve(action).queue_timeout_seconds
    cutoff = timezone.now() - timedelta(seconds=timeout_seconds)
    overdue = Execution.objects.filter(
        action=action, status__in=[S.QUEUED, S.REQUESTED], queue_seq__isnull=False, enqueued_at__lt=cutoff
    ).order_by("queue_seq")
    for execution_id in overdue.values_list("pk", flat=True):
        ended = Execution.objects.transition(
            execution_id,
            S.TIMEOUT,
            expected=[S.QUEUED, S.REQUESTED],
            completed_at=timezone.now(),
            error=f"Timed out waiting in the queue: waited more than {timeout_seconds} s "
            f"(the queue_timeout_seconds in force for action '{action.ref}').",
        )
        if ended:
            dispatch.withdraw(Execution.objects.get(pk=execution_id))
            report.queue_timeouts += 1


def _taken_back(lock: Lock) -> bool:
    """Take back the reaper lock if it is still held under this process's
    token: left by an earlier pass of this process whose release failed."""
    lock.local.token = _LOCK_TOKEN.encode()
    try:
        return bool(lock.reacquire())
    except LockNotOwnedError:
        lock.local.token = None
        return False


def reap_once() -> ReapReport:
    """One reaper pass; returns what it did (``ran`` False if another
    reaper holds the lock)."""
    gate = get_gate()
    interval = float(settings.ATTUNE_REAPER_INTERVAL_SECONDS)
    lock = gate.redis.lock(lock_key("reaper"), timeout=max(60.0, interval * 10), blocking=False)
    if not lock.acquire(blocking=False, token=_LOCK_TOKEN) and not _taken_back(lock):
        return ReapReport(ran=False)
    report = ReapReport()
    try:
        report.rebuilt = [r.action_ref for r in reconcile_missing()]
        actions = list(Action.objects.select_related("pack").order_by("pk"))
        by_id = {action.pk: action for action in actions}
        groups = gate.groups(list(by_id))
        queues = [QueueRef(action.pk, group) for action in actions for group in groups[action.pk]]
        now_ms = gate.now_ms()
        pipe = gate.redis.pipeline(transaction=False)
        for queue in queues:
            pipe.zrange(queue.active, 0, -1, withscores=True)
        held = list(zip(queues, pipe.execute(), strict=True))
        # A live run's end is released within milliseconds of its commit;
        # one still holding its slot after this long lost its release.
        released_late = _ended_before(
            {str(member) for _, slots in held for member, deadline in slots if deadline > now_ms},
            timezone.now() - timedelta(seconds=stranded_after_seconds()),
        )
        for queue, slots in held:
            expired = [str(member) for member, deadline in slots if deadline <= now_ms]
            for execution_id in _in_queue_order(expired):
                _reclaim(execution_id, queue, by_id[queue.action_id], report)
            for execution_id in sorted(str(member) for member, _ in slots if str(member) in released_late):
                if dispatch.release(released_late[execution_id]):
                    report.freed += 1
        report.woken = _wake_overdue(gate, actions, now_ms)
        busy = set(
            Execution.objects.filter(status__in=[S.QUEUED, S.REQUESTED])
            .values_list("action_id", flat=True)
            .distinct()
        )
        for action in actions:
            if action.pk in busy:
                _expire_waiting(action, report)
                report.stranded_admitted += admit_stranded_requests(
                    action, older_than_seconds=stranded_after_seconds()
                )
        report.workers_offline = Worker.objects.mark_silent_offline(
            silent_for=timedelta(seconds=float(settings.ATTUNE_LEASE_SECONDS) * WORKER_SILENT_LEASES)
        )
    finally:
        try:
            lock.release()
        except LockError:  # it expired under a very slow pass; nothing to undo
            logger.warning("reaper lock expired before release")
    return report
