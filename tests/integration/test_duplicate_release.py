"""A duplicate or late completion signal frees nothing a second time."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from executions.models import Execution, ExecutionStatus
from executions.services import request_execution
from queues import dispatch
from queues.keys import QueueRef
from workers import signals
from workers.tasks import run_execution

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus


def _start(execution_id: Any) -> Execution:
    """Do what the worker does when the task starts."""
    execution = Execution.objects.get(pk=execution_id)
    assert Execution.objects.transition(
        execution.pk, S.RUNNING, expected=[S.SCHEDULED], started_at=timezone.now(), worker="test"
    )
    return Execution.objects.get(pk=execution_id)


def test_it_frees_one_slot_when_the_success_signal_arrives_twice(make_action: Any, redis_db: Any) -> None:
    action = make_action("dup_signal", concurrency_limit=2)
    ids = [request_execution(action.ref, {}).pk for _ in range(5)]
    running = _start(ids[0])
    queue = QueueRef(action.pk)
    assert redis_db.zcard(queue.active) == 2

    outcome = {"execution_id": str(running.pk), "task_id": running.celery_task_id, "result": None}
    signals.on_task_success(sender=run_execution, result=outcome)
    signals.on_task_success(sender=run_execution, result=outcome)

    statuses = dict(Execution.objects.filter(pk__in=ids).values_list("pk", "status"))
    assert statuses[ids[0]] == S.COMPLETED
    # One slot freed, one head granted: never two.
    assert [statuses[pk] for pk in ids[1:]] == [S.SCHEDULED, S.SCHEDULED, S.QUEUED, S.QUEUED]
    assert redis_db.zcard(queue.active) == 2
    meta = redis_db.hgetall(queue.meta)
    assert meta["total_terminal"] == "1"
    assert meta["total_completed"] == "1"


def test_it_releases_once_when_the_release_itself_is_sent_twice(make_action: Any, redis_db: Any) -> None:
    action = make_action("dup_release", concurrency_limit=1)
    ids = [request_execution(action.ref, {}).pk for _ in range(3)]
    _start(ids[0])
    dispatch.finish(str(ids[0]), S.COMPLETED)
    done = Execution.objects.get(pk=ids[0])

    assert dispatch.release(done) is False  # finish already released it
    assert dispatch.release(done) is False
    queue = QueueRef(action.pk)
    assert redis_db.zcard(queue.active) == 1
    assert redis_db.zcard(queue.waiting) == 1
    assert Execution.objects.get(pk=ids[1]).status == S.SCHEDULED
    assert Execution.objects.get(pk=ids[2]).status == S.QUEUED


def test_it_ignores_a_failure_signal_for_a_stale_task_id(make_action: Any, redis_db: Any) -> None:
    action = make_action("stale_task", concurrency_limit=1)
    first = request_execution(action.ref, {})
    second = request_execution(action.ref, {})
    _start(first.pk)

    signals.on_task_failure(
        sender=run_execution,
        task_id="not-the-current-grant",
        exception=RuntimeError("late"),
        args=[str(first.pk)],
    )

    assert Execution.objects.get(pk=first.pk).status == S.RUNNING
    assert Execution.objects.get(pk=second.pk).status == S.QUEUED
    assert redis_db.zcard(QueueRef(action.pk).active) == 1
