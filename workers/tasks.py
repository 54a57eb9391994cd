"""The Celery tasks: one runs an action, one wakes an action's queues when
a rate limit lets the next execution through. They only parse and delegate."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from queues import dispatch
from queues.dispatch import CONFIG_HEADER, RATED_HEADER
from queues.metrics import GRANTED_AT_HEADER, RELEASED_AT_HEADER
from workers import execution


def _seconds(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


@shared_task(name="workers.run_execution", bind=True, ignore_result=True)
def run_execution(self: Task, execution_id: str) -> dict[str, Any]:
    return execution.run(
        execution_id,
        task_id=str(self.request.id),
        hostname=str(self.request.hostname or ""),
        released_at=_seconds(self.request.get(RELEASED_AT_HEADER)),
        granted_at=_seconds(self.request.get(GRANTED_AT_HEADER)),
        config=str(self.request.get(CONFIG_HEADER) or "") or None,
        rated=bool(self.request.get(RATED_HEADER)),
    )


@shared_task(name="workers.wake_action", ignore_result=True)
def wake_action(action_id: int) -> int:
    return dispatch.wake(int(action_id))
