"""The completion listener: Celery's task signals end executions and free
their slots. Handlers only parse the signal and call one service."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import task_failure, task_revoked, task_success, worker_ready, worker_shutdown

from workers import execution, registry, timers

logger = logging.getLogger(__name__)
RUN_TASK = "workers.run_execution"


def _is_run_task(sender: Any) -> bool:
    return getattr(sender, "name", sender) == RUN_TASK


@task_success.connect(dispatch_uid="attune.task_success")
def on_task_success(sender: Any = None, result: Any = None, **kwargs: Any) -> None:
    if _is_run_task(sender) and isinstance(result, dict):
        execution.record_success(result)


@task_failure.connect(dispatch_uid="attune.task_failure")
def on_task_failure(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    args: Any = None,
    **kwargs: Any,
) -> None:
    if _is_run_task(sender) and args and task_id and exception is not None:
        execution.record_failure(str(args[0]), str(task_id), exception)


@task_revoked.connect(dispatch_uid="attune.task_revoked")
def on_task_revoked(sender: Any = None, request: Any = None, **kwargs: Any) -> None:
    if _is_run_task(sender) and request is not None and request.args:
        execution.record_revoked(str(request.args[0]), str(request.id))


@worker_ready.connect(dispatch_uid="attune.worker_ready")
def on_worker_ready(sender: Any = None, **kwargs: Any) -> None:
    registry.worker_started(sender)
    # The consumer's event loop (None for the solo and thread pools).
    hub = getattr(sender, "hub", None)
    if hub is not None:
        timers.keep_compact(hub)


@worker_shutdown.connect(dispatch_uid="attune.worker_shutdown")
def on_worker_shutdown(sender: Any = None, **kwargs: Any) -> None:
    registry.worker_stopped(sender)
