"""Moving executions through their lifecycle in the test process, without
workers: what a worker's task and completion listener would do, through
the same service calls, so the gate and the database change as in production."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from executions.models import Execution, ExecutionStatus
from queues import dispatch

S = ExecutionStatus


def start(execution_id: Any) -> Execution:
    """A worker picks up a scheduled execution's task."""
    execution = Execution.objects.get(pk=execution_id)
    assert execution.status == S.SCHEDULED, execution.status
    Execution.objects.transition(
        execution.pk, S.RUNNING, expected=[S.SCHEDULED], started_at=timezone.now(), worker="test-worker"
    )
    return Execution.objects.get(pk=execution_id)


def end(execution_id: Any, status: str = S.COMPLETED) -> Execution:
    """Run a scheduled execution to ``status`` and free its slot, as the
    completion listener does; the next in line is granted."""
    execution = Execution.objects.get(pk=execution_id)
    if execution.status == S.SCHEDULED:
        execution = start(execution_id)
    finished = dispatch.finish(str(execution.pk), status, task_id=execution.celery_task_id)
    assert finished is not None and finished.status == status, finished
    return finished


def scheduled_ids(action_id: int) -> list[str]:
    return [
        str(pk)
        for pk in Execution.objects.filter(action_id=action_id, status=S.SCHEDULED)
        .order_by("grant_seq")
        .values_list("pk", flat=True)
    ]
