"""Ties the database to the gate: admission, hand-off and release.

PostgreSQL is the source of truth; the gate only orders and counts. The
rule that keeps the two consistent: a slot is freed in Redis only after the
execution's terminal status is committed, and a task is sent only after
the execution is committed as ``scheduled`` under that task's id. Every step
is a conditional update or an idempotent script, so a duplicate signal, a
late message or two racing processes change nothing twice.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from celery import current_app
from django.conf import settings
from django.utils import timezone
from kombu import Producer

from attune.broker import publish_hooked, publish_task
from executions.exceptions import QueueFull
from executions.models import (
    TERMINAL_STATUSES,
    TRANSITIONS,
    Action,
    Execution,
    ExecutionStatus,
)
from queues import metrics
from queues.action_cache import action_cache
from queues.gate import (
    KEEP_LIMIT,
    Admission,
    BatchAdmission,
    Grant,
    Release,
    get_gate,
    new_config_token,
    order_score,
)
from queues.keys import DEFAULT_GROUP, QueueRef
from queues.policy import EffectivePolicy, lease_ms, resolve, resolve_limit

logger = logging.getLogger(__name__)
S = ExecutionStatus
RUN_TASK = "workers.run_execution"
WAKE_TASK = "workers.wake_action"
# The Celery message header carrying the action's config token (queues/action_cache.py).
CONFIG_HEADER = "attune_config"
# Present when rate limits apply to the grant: the run reports its start, so
# the rate window counts starts (queues/lua/started_v1.lua).
RATED_HEADER = "attune_rated"


def queue_of(execution: Execution) -> QueueRef:
    return QueueRef(execution.action_id, execution.queue_group)


def _load_action(action_id: int) -> Action:
    return Action.objects.select_related("pack").get(pk=action_id)


def admit(
    executions: list[Execution], action: Action, policy: EffectivePolicy | None = None
) -> list[Execution]:
    """Pass committed ``requested`` executions of ``action`` through its gate,
    in list order, each into its queue (its ``queue_group``), with one
    script run and one statement for the batch. ``policy`` is the one in
    force when they were requested (default: read now).

    Updates each execution in place and returns them. Raises QueueFull after
    deleting every row of the batch when the ones of some queue that would
    wait do not fit in it, so a rejected request leaves nothing behind.
    """
    from queues.reconcile import reconcile_action

    if not executions:
        return executions
    gate = get_gate()
    ids = [str(execution.pk) for execution in executions]
    policy = policy or resolve(action)
    by_group: dict[str, list[Execution]] = {}
    for execution in executions:
        by_group.setdefault(execution.queue_group, []).append(execution)
    groups = [
        (group, [str(e.pk) for e in members], [e.priority for e in members])
        for group, members in by_group.items()
    ]

    def through_gate() -> BatchAdmission:
        return gate.admit_groups(
            action.pk,
            groups,
            limit=policy.limit,
            max_waiting=policy.max_queue_length,
            lease_ms=lease_ms(),
            cancel_at_limit=policy.cancels_at_limit,
            rates=policy.rate_limits,
        )

    batch = through_gate()
    if batch.outcome == "uninitialized":
        # First use of this queue, or Redis lost its state: rebuild it from
        # the database before anyone is let through, so order survives.
        reconcile_action(action, admit_requested=False)
        batch = through_gate()
    if batch.outcome == "full":
        Execution.objects.filter(pk__in=ids).delete()
        metrics.rejected(action.ref, "queue_full", len(ids))
        of_group = "" if batch.group in (None, DEFAULT_GROUP) else f" (group {batch.group})"
        raise QueueFull(
            f"Queue for action '{action.ref}'{of_group} is full: {batch.waiting} executions are waiting "
            f"and its max_queue_length is {policy.max_queue_length}"
            + (f"; none of the {len(ids)} requested were admitted." if len(ids) > 1 else "."),
            action_ref=action.ref,
            limit=policy.max_queue_length,
            retry_after_seconds=max(1, int(settings.ATTUNE_REAPER_INTERVAL_SECONDS)),
        )
    if batch.outcome != "admitted":
        # Still no queue state: the reaper admits these once it is rebuilt.
        for execution in executions:
            execution.refresh_from_db()
        return executions

    now = timezone.now()
    by_id = {str(execution.pk): execution for execution in executions}
    changes: list[tuple[Any, str, dict[str, Any]]] = []
    statuses = {"granted": S.SCHEDULED, "queued": S.QUEUED, "cancelled": S.CANCELLED}
    for admission in batch.admissions:
        if admission.outcome == "duplicate":
            continue
        granted = admission.outcome == "granted"
        cancelled = admission.outcome == "cancelled"
        changes.append(
            (
                admission.execution_id,
                statuses[admission.outcome],
                {
                    "queue_seq": admission.seq,
                    "enqueued_at": now,
                    "grant_seq": admission.grant_seq if granted else None,
                    "celery_task_id": admission.execution_id if granted else "",
                    "scheduled_at": now if granted else None,
                    "completed_at": now if cancelled else None,
                    "error": _cancelled_at_limit(action, policy) if cancelled else "",
                },
            )
        )
    recorded = Execution.objects.transition_many(changes, expected=[S.REQUESTED])
    if batch.wake_ms:
        _schedule_wake(action, batch.wake_ms)
    sent_at = time.time()
    granted: list[str] = []
    for admission in batch.admissions:
        execution = by_id[admission.execution_id]
        queue = queue_of(execution)
        if admission.outcome == "duplicate":
            _record_earlier_admission(execution, queue)
            execution.refresh_from_db()
        elif admission.execution_id in recorded:
            execution.queue_seq, execution.enqueued_at = admission.seq, now
            if admission.outcome == "granted":
                execution.status, execution.grant_seq = S.SCHEDULED, admission.grant_seq
                execution.celery_task_id, execution.scheduled_at = admission.execution_id, now
                metrics.granted(action.ref, admission.execution_id)
                granted.append(admission.execution_id)
            elif admission.outcome == "cancelled":
                execution.status, execution.completed_at = S.CANCELLED, now
                execution.error = _cancelled_at_limit(action, policy)
            else:
                execution.status = S.QUEUED
        else:
            _admission_raced(execution, admission, queue, action, now)
    _send_grants(granted, action, granted_at=sent_at, config=batch.config, rated=batch.rated)
    return executions


def _cancelled_at_limit(action: Action, policy: EffectivePolicy) -> str:
    return (
        f"Cancelled: action '{action.ref}' is at its concurrency limit of {policy.limit} and "
        f"policy '{policy.policy_name}' cancels rather than queues (method: cancel)."
    )


def _admission_raced(
    execution: Execution, admission: Admission, queue: QueueRef, action: Action, now: datetime
) -> None:
    """The execution moved before its admission was recorded: a release
    granted it a slot already (fine, record its seq), or a cancel ended it
    (take it back out of the gate)."""
    Execution.objects.filter(pk=execution.pk).update(queue_seq=admission.seq, enqueued_at=now)
    current = Execution.objects.get(pk=execution.pk)
    if current.status in TERMINAL_STATUSES:
        withdraw(current)
    execution.refresh_from_db()


def _record_earlier_admission(execution: Execution, queue: QueueRef) -> None:
    """An earlier admission got through the gate but its process died before
    recording it: take the seq and time it was given, so the execution is
    counted and its queue timeout runs from when it really joined."""
    entry = get_gate().waiting_entry(queue, str(execution.pk))
    if entry is None:
        # Holding a slot instead: its lease brings it back to the reaper.
        return
    seq, since_ms = entry
    enqueued_at = timezone.now() if since_ms is None else datetime.fromtimestamp(since_ms / 1000, tz=UTC)
    Execution.objects.transition(
        execution.pk, S.QUEUED, expected=[S.REQUESTED], queue_seq=seq, enqueued_at=enqueued_at
    )


def _send_grants(
    execution_ids: list[str], action: Action, *, granted_at: float, config: str, rated: bool
) -> None:
    """Send the tasks of the executions one admission granted, in one broker
    round trip (kombu's publish batch: one pipeline on Redis; RabbitMQ
    publishes each at once). A batch fails as a whole with its delivery
    uncertain (part of the pipeline may have run), and without the retries
    Celery gives one message: each is then sent again on its own. A copy
    that arrives twice runs once: the start takes only a `scheduled`
    execution, and the first copy leaves it `running`."""
    if not execution_ids:
        return
    try:
        with current_app.producer_or_acquire() as producer, producer.batch():
            for execution_id in execution_ids:
                _send(
                    execution_id,
                    execution_id,
                    action,
                    granted_at=granted_at,
                    config=config,
                    rated=rated,
                    producer=producer,
                )
    except Exception:
        logger.warning(
            "sending %d grants of action %s in one batch failed; sending each on its own",
            len(execution_ids),
            action.ref,
            exc_info=True,
        )
        for execution_id in execution_ids:
            _send(execution_id, execution_id, action, granted_at=granted_at, config=config, rated=rated)


def _send(
    execution_id: str,
    task_id: str,
    action: Action,
    released_at: float | None = None,
    *,
    granted_at: float,
    config: str = "",
    rated: bool = False,
    producer: Producer | None = None,
) -> None:
    timeout = float(action.timeout_seconds)
    # With the grant go when it was made, so the worker knows whether its
    # lease needs renewing before it starts, when its slot was freed, for
    # the hand-off time, and the token of the action's definition, so the
    # worker reads the action only when it changed; a worker that does not
    # know a header ignores it.
    headers: dict[str, Any] = {metrics.GRANTED_AT_HEADER: granted_at}
    if config:
        headers[CONFIG_HEADER] = config
    if rated:
        headers[RATED_HEADER] = 1
    if released_at is not None:
        headers[metrics.RELEASED_AT_HEADER] = released_at
    time_limit = timeout + float(settings.ATTUNE_HARD_TIMEOUT_GRACE_SECONDS)
    # What Celery would otherwise build with its pure-Python saferepr for
    # each message, for its logs.
    argsrepr = f"['{execution_id}']"
    if settings.BROKER_IS_REDIS and not publish_hooked():
        publish_task(
            current_app,
            RUN_TASK,
            task_id,
            [execution_id],
            queue=action.celery_queue,
            time_limit=time_limit,
            soft_time_limit=timeout,
            headers=headers,
            argsrepr=argsrepr,
            producer=producer,
        )
        return
    # Celery's own path: it sends the publish signals a receiver waits for,
    # and on RabbitMQ, which drops a message for a queue nobody declared
    # yet, it declares the queue.
    current_app.send_task(
        RUN_TASK,
        args=[execution_id],
        task_id=task_id,
        queue=action.celery_queue,
        soft_time_limit=timeout,
        time_limit=time_limit,
        headers=headers,
        argsrepr=argsrepr,
        kwargsrepr="{}",
        producer=producer,
    )


def _dispatch(
    queue: QueueRef,
    grants: list[Grant],
    *,
    action: Action | None = None,
    released_at: float | None = None,
    config: str = "",
    rated: bool = False,
) -> None:
    """Record each grant as ``scheduled`` and send its task.

    ``released_at`` is when the slots of ``grants`` were freed (None: they
    were free already, on a limit change); ``config`` the action's config
    token the release returned. A grant whose execution ended meanwhile
    (cancelled or timed out while the slot was on its way) hands the slot
    straight on to the next head.
    """
    if not grants:
        return
    action = action or action_cache().get(queue.action_id, config)
    pending = deque((grant, released_at) for grant in grants)
    while pending:
        grant, released_at = pending.popleft()
        # One task id per execution, whatever the number of grants: if a
        # grant is re-sent after its lease ran out (the worker holding the
        # message was slow, not dead), whichever copy arrives first runs it
        # and the other finds it no longer `scheduled`. A fresh id per send
        # would instead push the execution behind the Celery backlog again.
        task_id = grant.execution_id
        now = timezone.now()
        # Not waited for on disk: this record is lost only if PostgreSQL
        # crashes before its log reaches the disk, and with it every later
        # change (the log is flushed in order), so the run never started.
        # The row then says it waits while Redis has it holding a slot, the
        # state of a process killed before recording a grant: its message
        # starts nothing (the start takes only a `scheduled` row) and the
        # reaper puts it back at the head when its lease runs out.
        scheduled = Execution.objects.transition(
            grant.execution_id,
            S.SCHEDULED,
            expected=[S.REQUESTED, S.QUEUED],
            durable=False,
            grant_seq=grant.grant_seq,
            celery_task_id=task_id,
            scheduled_at=now,
        )
        if scheduled:
            metrics.granted(action.ref, grant.execution_id)
            _send(
                grant.execution_id,
                task_id,
                action,
                released_at,
                granted_at=time.time(),
                config=config,
                rated=rated,
            )
            continue
        current = Execution.objects.filter(pk=grant.execution_id).values_list("status", flat=True).first()
        if current is None or current in TERMINAL_STATUSES:
            passed_on_at = time.time()
            result = get_gate().release(
                queue,
                grant.execution_id,
                limit=KEEP_LIMIT,
                lease_ms=lease_ms(),
                terminal_status=current or S.CANCELLED,
            )
            ended = Execution.objects.filter(pk=grant.execution_id).first() if result.released else None
            if ended is not None:
                # The withdraw racing this grant found the slot taken and
                # freed nothing; this release is the one that ends it.
                metrics.terminal(ended)
            pending.extend((next_grant, passed_on_at) for next_grant in result.grants)
            if result.wake_ms:
                _schedule_wake(action, result.wake_ms)
        else:
            logger.warning(
                "grant for execution %s found it %s; left to the reaper", grant.execution_id, current
            )


def _schedule_wake(action: Action, wake_ms: int) -> None:
    """Have a worker refill the action's queues when its rate limits let the
    next one through: one task with that ETA, which the gate asked for once
    (the reaper's pass covers a wake-up lost with its worker)."""
    current_app.send_task(
        WAKE_TASK,
        args=[action.pk],
        queue=action.celery_queue,
        eta=datetime.fromtimestamp(wake_ms / 1000, tz=UTC),
    )


def wake(action_id: int) -> int:
    """Refill every queue of the action under its stored limit and rate
    limits; returns how many were granted."""
    gate = get_gate()
    granted = 0
    for group in gate.groups([action_id])[action_id]:
        queue = QueueRef(action_id, group)
        released_at = time.time()
        result = gate.release(queue, None, limit=KEEP_LIMIT, lease_ms=lease_ms())
        if result.initialized:
            _hand_on(queue, result, released_at)
            granted += len(result.grants)
    gate.woken(action_id)
    return granted


def _hand_on(queue: QueueRef, result: Release, released_at: float, *, action: Action | None = None) -> None:
    """Send the grants a release made, and ask for a wake-up if a rate limit
    holds the head back. ``released_at`` is when it ran: the hand-off time
    of its grants if it freed a slot (else they took slots that were free
    already)."""
    if result.wake_ms:
        _schedule_wake(action or action_cache().get(queue.action_id, result.config), result.wake_ms)
    _dispatch(
        queue,
        result.grants,
        action=action,
        released_at=released_at if result.released else None,
        config=result.config,
        rated=result.rated,
    )


def release(execution: Execution) -> bool:
    """Free a terminal execution's slot and start the next in line.

    Returns whether this call freed the slot; a duplicate frees nothing.
    The queue's stored limit applies (every change of a limit is applied to
    it at once), so ending a run reads nothing of its action unless a slot
    is handed on, and then only what the process has not cached.
    """
    assert execution.status in TERMINAL_STATUSES, execution.status
    queue = queue_of(execution)
    released_at = time.time()
    result = get_gate().release(
        queue,
        str(execution.pk),
        limit=KEEP_LIMIT,
        lease_ms=lease_ms(),
        terminal_status=execution.status,
    )
    if not result.initialized:
        from queues.reconcile import reconcile_action

        reconcile_action(_load_action(execution.action_id))
        return False
    if result.released:
        metrics.terminal(execution)
    _hand_on(queue, result, released_at)
    return result.released


def requeue(execution: Execution) -> bool:
    """Put a granted execution whose task never started back at the head.

    Its own order score (its priority and queue seq) goes with it, so it
    goes back before everyone who was behind it. Returns whether its slot
    was taken back.
    """
    action = _load_action(execution.action_id)
    queue = queue_of(execution)
    if execution.status == S.SCHEDULED:
        back = Execution.objects.transition(execution.pk, S.QUEUED, expected=[S.SCHEDULED], scheduled_at=None)
    else:
        # Granted in Redis, but the process died before recording it: the
        # row still says it waits, which is where it is going back to.
        back = execution.status in (S.REQUESTED, S.QUEUED)
    if not back:
        return False
    score = order_score(execution.priority, execution.queue_seq or 0)
    released_at = time.time()
    result = get_gate().release(
        queue, str(execution.pk), limit=resolve_limit(action), lease_ms=lease_ms(), requeue_score=score
    )
    _hand_on(queue, result, released_at, action=action)
    return result.released


def withdraw(execution: Execution) -> None:
    """Take a terminal execution out of the gate wherever it is: out of the
    queue if it waits, else out of its slot (handing the slot on)."""
    assert execution.status in TERMINAL_STATUSES, execution.status
    queue = queue_of(execution)
    if get_gate().dequeue(queue, str(execution.pk), terminal_status=execution.status):
        metrics.terminal(execution)
        return
    release(execution)


def forget(queue: QueueRef, execution_id: str) -> None:
    """Take an execution whose row no longer exists out of the gate."""
    gate = get_gate()
    if gate.dequeue(queue, execution_id, terminal_status=S.CANCELLED):
        return
    action = _load_action(queue.action_id)
    released_at = time.time()
    result = gate.release(
        queue, execution_id, limit=resolve_limit(action), lease_ms=lease_ms(), terminal_status=S.CANCELLED
    )
    _hand_on(queue, result, released_at, action=action)


def refill(action: Action) -> int:
    """Apply the action's current definition to each of its queues: store
    its limit and a new config token (so every process reads the definition
    again), and grant every free slot to each queue's head, in order.
    Returns how many executions were granted. ``action`` must be read
    after the change was committed."""
    gate = get_gate()
    config = new_config_token()
    policy = resolve(action)
    granted = 0
    for group in gate.groups([action.pk])[action.pk]:
        queue = QueueRef(action.pk, group)
        result = gate.release(
            queue, None, limit=policy.limit, lease_ms=lease_ms(), config=config, rates=policy.rate_limits
        )
        if result.initialized:
            if result.wake_ms:
                _schedule_wake(action, result.wake_ms)
            _dispatch(queue, result.grants, action=action, config=config, rated=result.rated)
            granted += len(result.grants)
    return granted


def refill_actions(action_ids: list[int]) -> int:
    """Refill several actions after a policy change; returns grants made."""
    actions = Action.objects.select_related("pack").filter(pk__in=action_ids)
    return sum(refill(action) for action in actions)


def finish(
    execution_id: str,
    status: str,
    *,
    task_id: str | None = None,
    result: Any = None,
    error: str = "",
) -> Execution | None:
    """Record a terminal status for the run of ``task_id`` and release its slot.

    A run being cancelled ends ``cancelled`` whatever it returned. If the
    execution already ended (a duplicate or late signal), nothing is
    written, but the release is still attempted: it is idempotent, and it
    frees a slot whose earlier release was lost to a crash.
    """
    where = {"celery_task_id": task_id} if task_id else {}
    fields: dict[str, Any] = {"completed_at": timezone.now(), "result": result, "error": error[:10000]}
    expected = [source for source in (S.SCHEDULED, S.RUNNING) if status in TRANSITIONS[source]]
    # One statement ends the run and returns what the release needs.
    execution = Execution.objects.transition_returning(
        execution_id, status, expected=expected, where=where, canceling_becomes=S.CANCELLED, **fields
    )
    if execution is None:
        execution = Execution.objects.filter(pk=execution_id).first()
        if execution is None or (task_id and execution.celery_task_id != task_id):
            return execution
    if execution.status in TERMINAL_STATUSES:
        release(execution)
    return execution
