"""What the reaper does with each kind of expired lease, one window of a
crash at a time (no worker processes: each test leaves the state a process
dying at that point would leave, then runs one reaper pass)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import redis
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from redis.exceptions import ClusterDownError
from redis.lock import Lock

from executions.models import Execution, ExecutionStatus
from executions.services import request_execution
from queues import reaper
from queues.gate import get_gate
from queues.keys import QueueRef, lock_key
from queues.reaper import reap_once
from tests.faults import BROKER_QUEUE, assert_gate_drained_and_counted

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus


def _expire(client: redis.Redis, queue: QueueRef, execution_id: Any) -> None:
    """The lease ran out: its holder stopped renewing it long ago."""
    client.zadd(queue.active, {str(execution_id): 0}, xx=True)


def _start(execution_id: Any) -> None:
    assert Execution.objects.transition(
        execution_id, S.RUNNING, expected=[S.SCHEDULED], started_at=timezone.now(), worker="gone@host"
    )


def _status(execution_id: Any) -> str:
    return Execution.objects.get(pk=execution_id).status


def test_it_abandons_a_run_whose_worker_died_and_starts_the_next(
    make_action: Any, redis_db: redis.Redis
) -> None:
    action = make_action("died_running", concurrency_limit=1)
    queue = QueueRef(action.pk)
    first, second = (request_execution(action.ref, {}).pk for _ in range(2))
    _start(first)
    _expire(redis_db, queue, first)

    report = reap_once()

    assert report.abandoned == 1
    assert _status(first) == S.ABANDONED
    assert _status(second) == S.SCHEDULED
    assert redis_db.zrange(queue.active, 0, -1) == [str(second)]


def test_it_frees_a_slot_whose_release_was_lost_after_the_terminal_status_was_written(
    make_action: Any, redis_db: redis.Redis
) -> None:
    action = make_action("died_releasing", concurrency_limit=1)
    queue = QueueRef(action.pk)
    first, second = (request_execution(action.ref, {}).pk for _ in range(2))
    _start(first)
    # The run ended and was recorded; the process died before release_v4.
    assert Execution.objects.transition(first, S.COMPLETED, expected=[S.RUNNING], completed_at=timezone.now())
    _expire(redis_db, queue, first)

    report = reap_once()

    assert report.freed == 1
    assert _status(second) == S.SCHEDULED
    meta = redis_db.hgetall(queue.meta)
    assert (meta["total_terminal"], meta["total_completed"]) == ("1", "1")


def test_it_frees_without_waiting_for_its_lease_a_slot_whose_run_ended_a_while_ago(
    make_action: Any, redis_db: redis.Redis
) -> None:
    action = make_action("release_lost", concurrency_limit=1)
    queue = QueueRef(action.pk)
    first, second = (request_execution(action.ref, {}).pk for _ in range(2))
    _start(first)
    # The run ended and was recorded, but its release failed (its primary
    # was away); its worker lives on, so the lease has long to run.
    ended_at = timezone.now() - timedelta(seconds=10)
    assert Execution.objects.transition(first, S.COMPLETED, expected=[S.RUNNING], completed_at=ended_at)

    report = reap_once()

    assert report.freed == 1
    assert _status(second) == S.SCHEDULED
    assert redis_db.zrange(queue.active, 0, -1) == [str(second)]
    meta = redis_db.hgetall(queue.meta)
    assert (meta["total_terminal"], meta["total_completed"]) == ("1", "1")


def test_it_leaves_the_slot_of_a_run_that_just_ended_to_its_worker(
    make_action: Any, redis_db: redis.Redis
) -> None:
    action = make_action("release_due", concurrency_limit=1)
    queue = QueueRef(action.pk)
    first, second = (request_execution(action.ref, {}).pk for _ in range(2))
    _start(first)
    # Recorded a moment ago: its worker is making the release right now.
    assert Execution.objects.transition(first, S.COMPLETED, expected=[S.RUNNING], completed_at=timezone.now())

    report = reap_once()

    assert report.freed == 0
    assert _status(second) == S.QUEUED
    assert redis_db.zrange(queue.active, 0, -1) == [str(first)]


def test_it_puts_back_at_the_head_a_grant_made_in_redis_that_the_granter_never_recorded(
    make_action: Any, redis_db: redis.Redis
) -> None:
    action = make_action("died_granting", concurrency_limit=1)
    queue = QueueRef(action.pk)
    first, second, third = (request_execution(action.ref, {}).pk for _ in range(3))
    _start(first)
    assert Execution.objects.transition(first, S.COMPLETED, expected=[S.RUNNING], completed_at=timezone.now())
    # release_v4 ran and granted the head; the process died before recording it.
    result = get_gate().release(queue, str(first), limit=1, lease_ms=30000, terminal_status=S.COMPLETED)
    assert [grant.execution_id for grant in result.grants] == [str(second)]
    assert _status(second) == S.QUEUED
    _expire(redis_db, queue, second)

    report = reap_once()

    assert report.requeued == 1
    assert _status(second) == S.SCHEDULED
    assert _status(third) == S.QUEUED
    assert Execution.objects.get(pk=second).grant_seq == 3


def test_a_hand_off_whose_record_a_database_crash_lost_runs_once_after_its_lease(
    make_action: Any, redis_db: redis.Redis
) -> None:
    """A hand-off's grant is recorded without waiting for the disk: a crash
    of PostgreSQL can lose it, with every later change, while its message
    is on its way. The message starts nothing; the lease brings it back."""
    from django.db import connection

    from queues import dispatch
    from workers.execution import run

    action = make_action("grant_not_flushed", concurrency_limit=1)
    queue = QueueRef(action.pk)
    first, second, third = (request_execution(action.ref, {}).pk for _ in range(3))
    _start(first)
    with CaptureQueriesContext(connection) as sql:
        dispatch.finish(str(first), S.COMPLETED, task_id=str(first))
    grant_record = [q["sql"] for q in sql.captured_queries if '"scheduled_at" = ' in q["sql"]]
    assert len(grant_record) == 1 and grant_record[0].startswith("SET LOCAL synchronous_commit TO OFF;")
    # What the table says once PostgreSQL is back: the grant never happened.
    Execution.objects.filter(pk=second).update(
        status=S.QUEUED, grant_seq=None, celery_task_id="", scheduled_at=None
    )

    stale = run(str(second), task_id=str(second), hostname="w@host")
    _expire(redis_db, queue, second)
    report = reap_once()
    execution = Execution.objects.get(pk=second)

    assert stale.get("skipped") is True
    assert report.requeued == 1
    # Back at the head, so granted again before the one behind it.
    assert (execution.status, execution.grant_seq) == (S.SCHEDULED, 3)
    assert _status(third) == S.QUEUED
    assert "skipped" not in run(str(second), task_id=str(second), hostname="w@host")
    assert _status(second) == S.RUNNING


def test_it_sends_again_a_grant_whose_task_message_was_lost(make_action: Any, redis_db: redis.Redis) -> None:
    from django.conf import settings

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    action = make_action("lost_message", concurrency_limit=1)
    queue = QueueRef(action.pk)
    first, second = (request_execution(action.ref, {}).pk for _ in range(2))
    broker.delete(BROKER_QUEUE)
    _expire(redis_db, queue, first)

    report = reap_once()

    assert report.requeued == 1
    execution = Execution.objects.get(pk=first)
    # Back at the head, so granted again before the one behind it.
    assert (execution.status, execution.grant_seq) == (S.SCHEDULED, 2)
    assert _status(second) == S.QUEUED
    assert broker.llen(BROKER_QUEUE) == 1


def test_it_ends_a_cancel_whose_worker_died_cancelled(make_action: Any, redis_db: redis.Redis) -> None:
    from executions.services import cancel_execution

    action = make_action("died_cancelling", concurrency_limit=1)
    queue = QueueRef(action.pk)
    only = request_execution(action.ref, {}).pk
    _start(only)
    assert cancel_execution(only).status == S.CANCELING
    _expire(redis_db, queue, only)

    reap_once()

    assert _status(only) == S.CANCELLED
    assert_gate_drained_and_counted([action])


def test_it_records_a_place_in_the_queue_whose_admission_was_never_written(
    make_action: Any, redis_db: redis.Redis, settings: Any
) -> None:
    from queues import reconcile

    action = make_action("died_admitting", concurrency_limit=1)
    queue = QueueRef(action.pk)
    holder = request_execution(action.ref, {})
    # Committed, through admit_v6 into the queue, then the process died
    # before recording `queued` and the seq.
    stranded = Execution.objects.create(action=action, action_ref=action.ref, parameters={})
    batch = get_gate().admit(queue, [str(stranded.pk)], limit=1, max_waiting=100, lease_ms=30000)
    admission = batch.admissions[0]
    assert (admission.outcome, admission.seq) == ("queued", 2)
    Execution.objects.filter(pk=stranded.pk).update(created=timezone.now() - timedelta(seconds=60))
    settings.ATTUNE_REAPER_INTERVAL_SECONDS = 1.0
    assert reconcile.stranded_after_seconds() == 1.0

    reap_once()

    recorded = Execution.objects.get(pk=stranded.pk)
    assert (recorded.status, recorded.queue_seq) == (S.QUEUED, 2)
    assert abs((recorded.enqueued_at - timezone.now()).total_seconds()) < 5
    assert redis_db.zrange(queue.waiting, 0, -1) == [str(stranded.pk)]
    assert redis_db.hget(queue.meta, "seq") == "2"
    assert _status(holder.pk) == S.SCHEDULED


def test_a_pass_that_could_not_release_its_lock_leaves_the_next_pass_of_its_process_free_to_run(
    redis_db: redis.Redis,
) -> None:
    down = ClusterDownError("The cluster is down")
    with (
        mock.patch.object(reaper, "reconcile_missing", autospec=True, side_effect=down),
        mock.patch.object(Lock, "do_release", autospec=True, side_effect=down),
        pytest.raises(ClusterDownError),
    ):
        reap_once()
    # Left behind until its timeout: nobody could delete it.
    assert redis_db.exists(lock_key("reaper"))

    assert reap_once().ran is True
    assert not redis_db.exists(lock_key("reaper"))
