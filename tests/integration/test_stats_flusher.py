"""The coalescing flusher against the real gate: it writes only the queues
that changed, one row however many changes, never goes backwards, and only
one flusher in the fleet acts at a time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from executions.models import ExecutionStatus
from executions.services import cancel_execution, request_execution
from queues.gate import get_gate
from queues.keys import QueueRef, lock_key
from queues.models import QueueStats
from queues.stats import LOCK_NAME, StatsFlusher, flush_once, start_worker_flusher, stop_worker_flusher
from tests.conftest import wait_until
from tests.drive import end

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus


def test_it_writes_a_changed_queue_once_and_an_unchanged_one_never(make_action: Any, redis_db: Any) -> None:
    action = make_action("steady", concurrency_limit=1)
    request_execution(action.ref)

    first = flush_once()
    second = flush_once()

    assert first.written == [QueueRef(action.pk)]
    assert second.written == []


def test_it_coalesces_many_changes_into_one_row_equal_to_the_live_counters(
    make_action: Any, redis_db: Any
) -> None:
    action = make_action("churn", concurrency_limit=2)
    ids = [request_execution(action.ref).pk for _ in range(12)]
    for execution_id in ids[:5]:
        end(execution_id)
    cancel_execution(ids[-1])

    report = flush_once()

    assert report.written == [QueueRef(action.pk)]
    row = QueueStats.objects.get(action=action)
    snapshot = get_gate().snapshots([QueueRef(action.pk)])[0]
    assert (row.queue_length, row.active_count, row.max_concurrent) == (snapshot.waiting, snapshot.active, 2)
    assert (row.queue_length, row.active_count) == (4, 2)
    assert (row.total_enqueued, row.total_completed, row.total_terminal) == (12, 5, 6)
    assert int(row.last_updated.timestamp() * 1000) == snapshot.updated_ms


def test_it_writes_only_the_queues_that_moved(make_action: Any, redis_db: Any) -> None:
    calm, busy = make_action("calm"), make_action("busy", concurrency_limit=1)
    request_execution(calm.ref)
    request_execution(busy.ref)
    flush_once()

    request_execution(busy.ref)
    report = flush_once()

    assert report.written == [QueueRef(busy.pk)]
    assert QueueStats.objects.get(action=busy).queue_length == 1


def test_it_picks_up_a_limit_change_that_moved_no_counter(make_action: Any, redis_db: Any) -> None:
    action = make_action("relimited", concurrency_limit=1)
    request_execution(action.ref)
    flush_once()

    action.concurrency_limit = 4
    action.save()
    report = flush_once()

    assert report.written == [QueueRef(action.pk)]
    assert QueueStats.objects.get(action=action).max_concurrent == 4


def test_it_keeps_the_row_of_a_queue_whose_live_state_is_gone(make_action: Any, redis_db: Any) -> None:
    action = make_action("lost", concurrency_limit=1)
    request_execution(action.ref)
    request_execution(action.ref)
    flush_once()
    redis_db.delete(*QueueRef(action.pk).all_keys())

    report = flush_once()

    assert report.written == []
    assert report.without_state == 1
    assert QueueStats.objects.get(action=action).queue_length == 1


def test_it_brings_a_row_that_fell_behind_up_to_date(make_action: Any, redis_db: Any) -> None:
    action = make_action("behind")
    request_execution(action.ref)
    flush_once()
    written = QueueStats.objects.get(action=action).last_updated
    QueueStats.objects.filter(action=action).update(
        last_updated=written - timedelta(hours=2), total_enqueued=0
    )

    flush_once()

    row = QueueStats.objects.get(action=action)
    assert (row.last_updated, row.total_enqueued) == (written, 1)


def test_it_lets_only_one_flusher_act_at_a_time(make_action: Any, redis_db: Any) -> None:
    request_execution(make_action("shared").ref)
    holder, other = StatsFlusher(), StatsFlusher()

    assert holder.run_pass().ran
    assert not other.run_pass().ran
    # The holder keeps its turn pass after pass.
    assert holder.run_pass().ran

    holder.release()
    assert other.run_pass().ran
    assert not holder.run_pass().ran
    other.release()


def test_it_hands_over_when_the_holders_lock_expires(make_action: Any, redis_db: Any) -> None:
    request_execution(make_action("handover").ref)
    holder, other = StatsFlusher(), StatsFlusher()
    assert holder.run_pass().ran

    # What a dead holder's lock does once its TTL runs out.
    redis_db.delete(lock_key(LOCK_NAME))

    assert other.run_pass().ran
    # The old holder finds out at its next renewal and stands down.
    assert not holder.run_pass().ran
    other.release()


def test_it_runs_as_a_thread_in_a_worker_and_stops_with_it(
    make_action: Any, redis_db: Any, settings: Any
) -> None:
    settings.ATTUNE_STATS_FLUSH_INTERVAL_SECONDS = 0.2
    action = make_action("threaded", concurrency_limit=1)
    flusher = start_worker_flusher()
    try:
        assert flusher is not None
        request_execution(action.ref)
        request_execution(action.ref)
        wait_until(
            lambda: QueueStats.objects.filter(action=action, queue_length=1).exists(),
            timeout=10,
            message="the flusher thread to write the row",
        )
    finally:
        stop_worker_flusher()
    assert not redis_db.exists(lock_key(LOCK_NAME))


def test_it_does_not_start_when_persistence_is_switched_off(settings: Any, redis_db: Any) -> None:
    settings.ATTUNE_STATS_FLUSH_ENABLED = False

    assert start_worker_flusher() is None
