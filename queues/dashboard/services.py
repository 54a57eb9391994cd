"""What the live queue dashboard shows and does: every queue's figures, one
queue's waiting line, and a cancel. The views only call these."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count
from django.utils import timezone

from executions.models import TERMINAL_STATUSES, Action, Execution
from executions.services import cancel_execution, get_action
from queues.gate import get_gate
from queues.keys import QueueRef
from queues.live import LiveQueue, busiest_groups, live_queues

THROUGHPUT_WINDOW = timedelta(minutes=1)
# The most groups of one action listed under its row, busiest first; the
# rest are added up as "other".
MAX_GROUPS_LISTED = 20
# A waiting line is shown from its head; past this the page says how many more.
MAX_LISTED = 200


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _seconds_since(value: datetime | None, now: datetime) -> float | None:
    return None if value is None else max(0.0, (now - value).total_seconds())


def _throughput(since: datetime) -> dict[int, dict[str, int]]:
    """Executions that ended since ``since``, per action and status.

    Terminal transitions stamp ``updated``, so (status, updated) is served by
    the execution_status_updated index: a range scan over one minute's rows.
    """
    rows = (
        Execution.objects.filter(status__in=TERMINAL_STATUSES, updated__gte=since)
        .values("action_id", "status")
        .annotate(count=Count("pk"))
    )
    by_action: dict[int, dict[str, int]] = {}
    for row in rows:
        by_action.setdefault(row["action_id"], {})[row["status"]] = row["count"]
    return by_action


def _queue_row(action: Action, live: LiveQueue, ended: dict[str, int]) -> dict[str, Any]:
    return {
        "action": live.action_ref,
        "label": action.label,
        "enabled": action.enabled,
        "waiting": live.queue_length,
        "active": live.active_count,
        "limit": live.max_concurrent,
        "max_queue_length": action.max_queue_length,
        "oldest_enqueued_at": _iso(live.oldest_enqueued_at),
        "oldest_age_seconds": live.oldest_age_seconds,
        "throughput_per_minute": sum(ended.values()),
        "ended_last_minute": ended,
        "total_enqueued": live.total_enqueued,
        "total_terminal": live.total_terminal,
        "total_completed": live.total_completed,
        "last_updated": _iso(live.last_updated),
        # Each queue of the action: one ("default") unless a policy with
        # parameters splits it.
        "groups": [
            {
                "group": group.name,
                "waiting": group.queue_length,
                "active": group.active_count,
                "oldest_age_seconds": group.oldest_age_seconds,
            }
            for group in busiest_groups(live.groups, MAX_GROUPS_LISTED)
        ],
    }


def overview() -> dict[str, Any]:
    """Every action's queue, by ref: the live Redis figures (the same as
    queues.live.live_queues) and the executions that ended in the last minute."""
    now = timezone.now()
    actions = list(Action.objects.select_related("pack").order_by("ref"))
    ended = _throughput(now - THROUGHPUT_WINDOW)
    rows = [
        _queue_row(action, live, ended.get(action.pk, {}))
        for action, live in zip(actions, live_queues(actions), strict=True)
    ]
    return {"generated_at": now.isoformat(), "queues": rows}


def _execution_row(execution: Execution, now: datetime) -> dict[str, Any]:
    return {
        "id": str(execution.pk),
        "status": execution.status,
        "queue_seq": execution.queue_seq,
        "created": _iso(execution.created),
        "enqueued_at": _iso(execution.enqueued_at),
        "waited_seconds": _seconds_since(execution.enqueued_at or execution.created, now),
        "started_at": _iso(execution.started_at),
        "worker": execution.worker,
        "requested_by": execution.requested_by.get_username() if execution.requested_by else None,
        "parameters": execution.parameters,
    }


def queue_detail(action_ref: str, *, limit: int = MAX_LISTED) -> dict[str, Any]:
    """One action's waiting executions in queue order, with their 1-based
    positions (the gate's order, as ``Gate.position`` reports it), and the
    executions holding its slots. Raises ActionNotFound.

    The order comes from Redis and the rows from the database; an id whose
    row is gone (a rejected request being cleaned up) keeps its position
    and is shown as unknown.
    """
    action = get_action(action_ref)
    gate = get_gate()
    queues = [QueueRef(action.pk, group) for group in gate.groups([action.pk])[action.pk]]
    pipe = gate.redis.pipeline(transaction=False)
    for queue in queues:
        pipe.zrange(queue.waiting, 0, max(0, limit - 1))
        pipe.zcard(queue.waiting)
        pipe.zrange(queue.active, 0, -1)
    replies = pipe.execute()
    per_queue = [(queue, *replies[i * 3 : i * 3 + 3]) for i, queue in enumerate(queues)]
    all_ids = [pk for _, waiting_ids, _, active_ids in per_queue for pk in (*waiting_ids, *active_ids)]
    rows = Execution.objects.select_related("requested_by").in_bulk(all_ids)
    by_id = {str(pk): execution for pk, execution in rows.items()}
    now = timezone.now()
    waiting: list[dict[str, Any]] = []
    active: list[dict[str, Any]] = []
    waiting_total = 0
    # Each group is a queue of its own: positions count within it.
    for queue, waiting_ids, group_total, active_ids in per_queue:
        waiting_total += int(group_total)
        for index, execution_id in enumerate(waiting_ids[: max(0, limit - len(waiting))]):
            execution = by_id.get(str(execution_id))
            row = (
                _execution_row(execution, now)
                if execution
                else {"id": str(execution_id), "status": "unknown", "parameters": None}
            )
            waiting.append({"position": index + 1, "group": queue.group, **row})
        active += [
            {"group": queue.group, **_execution_row(by_id[str(i)], now)}
            for i in active_ids
            if str(i) in by_id
        ]
    active.sort(key=lambda row: row["started_at"] or "")
    return {
        "action": action.ref,
        "waiting_total": waiting_total,
        "waiting": waiting,
        "active": active,
    }


def cancel(execution_id: str, by: Any) -> dict[str, Any]:
    """Cancel one execution (executions.services.cancel_execution) as the
    staff user ``by``; returns its id and new status. Raises
    ExecutionNotFound or AlreadyTerminal."""
    execution = cancel_execution(execution_id, by=by)
    return {"id": str(execution.pk), "status": execution.status, "action": execution.action_ref}
