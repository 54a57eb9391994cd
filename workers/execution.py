"""Running one execution inside a Celery worker, and interpreting how the
run ended. The task and the signal handlers call these."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from django.utils import timezone

from executions.models import Execution, ExecutionStatus
from executions.storable import storable
from queues import dispatch, metrics
from queues.action_cache import action_cache
from queues.gate import get_gate
from workers.core_actions import json_dumps_safe
from workers.exceptions import ActionTimedOut, ExecutionCancelled
from workers.lease import lease_keeper
from workers.runners import RUNNERS

S = ExecutionStatus


@contextlib.contextmanager
def sigterm_cancels() -> Iterator[None]:
    """Turn SIGTERM (Celery's revoke with terminate) into ExecutionCancelled
    in the running action, so its cleanup runs (a shell action's process
    group is killed) and the pool process survives."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise ExecutionCancelled("The execution was cancelled while running")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def sigterm_deferred() -> Iterator[None]:
    """Hold SIGTERM back while a run's end is recorded, and deliver it after.

    A cancel that loses the race to the completion still sends its SIGTERM,
    and outside sigterm_cancels() it kills the pool process wherever it is:
    between the terminal status and the slot's release, or between the
    release and the hand-off to the next execution, which then waits a
    whole lease for the reaper. Blocked, it arrives once both are done.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # A handler that notes the signal rather than a blocked signal mask: the
    # mask is per thread, and the kernel hands a process-wide SIGTERM to any
    # thread that does not block it, so with another thread alive a mask
    # would not hold it back. Python runs handlers in the main thread only.
    pending: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if pending:
            signal.raise_signal(signal.SIGTERM)


def run(
    execution_id: str,
    *,
    task_id: str,
    hostname: str,
    released_at: float | None = None,
    granted_at: float | None = None,
    config: str | None = None,
    rated: bool = False,
) -> dict[str, Any]:
    """Run the execution granted to ``task_id``. ``released_at`` is when the
    slot it was granted was freed by another execution, for the hand-off
    metric; ``granted_at`` when the grant was made; ``config`` the token of
    the action's definition at the grant; ``rated`` whether rate limits
    apply, so the start is reported to the gate (all from the grant's
    headers; None or False when absent).

    Returns ``{"execution_id", "task_id", "result"}``, or with ``skipped``
    when this message is not the current grant (a stale redelivery, or the
    execution was cancelled before it started). Action failures propagate
    as exceptions, for the task_failure listener.
    """
    # One statement starts the run and returns it; the action comes from
    # this process's cache, read again only if it changed before the grant.
    execution = Execution.objects.transition_returning(
        execution_id,
        S.RUNNING,
        expected=[S.SCHEDULED],
        where={"celery_task_id": task_id},
        started_at=timezone.now(),
        worker=hostname or "",
    )
    outcome: dict[str, Any] = {"execution_id": execution_id, "task_id": task_id}
    if execution is None:
        return {**outcome, "skipped": True}
    metrics.started(execution, released_at)
    if rated:
        get_gate().mark_started(execution.action_id, execution_id)
    action = action_cache().get(execution.action_id, config)
    with (
        lease_keeper().holding(dispatch.queue_of(execution), execution_id, granted_at=granted_at),
        sigterm_cancels(),
    ):
        result = RUNNERS[action.runner](
            action.entrypoint, execution.parameters, float(action.timeout_seconds)
        )
    # PostgreSQL stores no NUL: an output holding one would fail the UPDATE
    # that ends the execution, leaving it running until its lease ran out.
    return {**outcome, "result": storable(json_dumps_safe(result))}


def status_for(exception: BaseException) -> str:
    if isinstance(exception, (SoftTimeLimitExceeded, TimeLimitExceeded, ActionTimedOut)):
        return S.TIMEOUT
    if isinstance(exception, ExecutionCancelled):
        return S.CANCELLED
    if isinstance(exception, WorkerLostError):
        return S.ABANDONED
    return S.FAILED


def record_success(outcome: dict[str, Any]) -> None:
    execution_id, task_id = outcome["execution_id"], outcome["task_id"]
    if outcome.get("skipped"):
        # Only a cancel that beat the start leaves work to do: end it.
        never_started = {"status": S.CANCELING, "celery_task_id": task_id, "started_at__isnull": True}
        if Execution.objects.filter(pk=execution_id, **never_started).exists():
            with sigterm_deferred():
                dispatch.finish(
                    execution_id, S.CANCELLED, task_id=task_id, error="Cancelled before it started."
                )
        return
    with sigterm_deferred():
        dispatch.finish(execution_id, S.COMPLETED, task_id=task_id, result=outcome.get("result"))


def record_failure(execution_id: str, task_id: str, exception: BaseException) -> None:
    status = status_for(exception)
    if status == S.TIMEOUT:
        error = f"Timed out: ran longer than its timeout_seconds ({type(exception).__name__})."
    elif status == S.CANCELLED and not Execution.objects.filter(pk=execution_id, status=S.CANCELING).exists():
        # A SIGTERM no cancel sent: the worker's host is stopping it (systemd
        # and others signal every process of the service). The run is over:
        # end it now rather than when its lease runs out. A cancel racing in
        # still wins: finish() ends a `canceling` execution `cancelled`.
        status = S.ABANDONED
        error = "The worker running this execution was stopped (SIGTERM) before it ended."
    else:
        error = f"{type(exception).__name__}: {exception}"
    with sigterm_deferred():
        dispatch.finish(
            execution_id,
            status,
            task_id=task_id,
            result=storable(json_dumps_safe(getattr(exception, "result", None))),
            error=storable(error),
        )


def record_revoked(execution_id: str, task_id: str) -> None:
    dispatch.finish(execution_id, S.CANCELLED, task_id=task_id, error="Cancelled.")
