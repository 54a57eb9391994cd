"""The Celery task that runs an action. It only parses and delegates."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from workers import execution


@shared_task(name="workers.run_execution", bind=True, ignore_result=True)
def run_execution(self: Task, execution_id: str) -> dict[str, Any]:
    return execution.run(
        execution_id, task_id=str(self.request.id), hostname=str(self.request.hostname or "")
    )
