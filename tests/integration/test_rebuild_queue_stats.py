"""The counters are exact: at rest, the row the flusher writes from Redis
equals a count over the executions table, and rebuild_queue_stats
recomputes it from that table when it is in doubt."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.core.management import call_command
from django.utils import timezone

from executions.models import Execution, ExecutionStatus
from executions.services import cancel_execution, request_execution
from queues import dispatch
from queues.keys import QueueRef
from queues.models import QueueStats
from queues.stats import counts_from_database, flush_once, rebuild
from tests.drive import end, start

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus


@pytest.fixture
def mixed(make_action: Any, redis_db: Any) -> Any:
    """An action whose executions ended every way there is, with some still
    running and waiting."""
    action = make_action("mixed", concurrency_limit=2)
    ids = [request_execution(action.ref).pk for _ in range(12)]
    end(ids[0])
    end(ids[1], S.FAILED)
    end(ids[2], S.TIMEOUT)
    end(ids[3], S.ABANDONED)
    cancel_execution(ids[10])  # waiting: ends at once
    start(ids[4])
    cancel_execution(ids[4])  # running: canceling until its worker reports
    dispatch.finish(str(ids[4]), S.CANCELLED, task_id=None)
    end(ids[5])
    return action


def test_it_writes_live_counters_equal_to_a_count_over_the_executions_table(mixed: Any) -> None:
    flush_once()

    live = QueueStats.objects.get(action=mixed)
    (counted,) = counts_from_database([mixed])
    assert live.as_dict() | {"oldest_enqueued_at": None} == counted.as_dict() | {"oldest_enqueued_at": None}
    assert (live.queue_length, live.active_count) == (3, 2)
    assert (live.total_enqueued, live.total_completed, live.total_terminal) == (12, 2, 7)
    # Both clocks stamped the head's enqueue; they agree to well within a second.
    assert abs(live.oldest_enqueued_at - counted.oldest_enqueued_at) < timedelta(seconds=1)


def test_it_counts_a_request_cancelled_before_the_gate_nowhere(make_action: Any, redis_db: Any) -> None:
    action = make_action("never_gated", concurrency_limit=1)
    request_execution(action.ref)
    # The process dies between the commit and the gate step...
    with (
        mock.patch.object(dispatch, "admit", autospec=True, side_effect=RuntimeError("died")),
        pytest.raises(RuntimeError),
    ):
        request_execution(action.ref)
    stranded = Execution.objects.get(action=action, status=S.REQUESTED)
    # ...and the request is cancelled before the reaper admits it.
    cancel_execution(stranded.pk)
    flush_once()

    live = QueueStats.objects.get(action=action)
    (counted,) = counts_from_database([action])
    assert live.as_dict() == counted.as_dict()
    assert (live.total_enqueued, live.total_terminal, live.active_count) == (1, 0, 1)


def test_it_rebuilds_a_wrong_row_from_the_executions_table(mixed: Any) -> None:
    QueueStats.objects.upsert(mixed, queue_length=999, total_completed=0, last_updated=timezone.now())

    call_command("rebuild_queue_stats")

    row = QueueStats.objects.get(action=mixed)
    assert (row.queue_length, row.active_count, row.total_completed, row.total_terminal) == (3, 2, 2, 7)


def test_it_keeps_the_rebuilt_row_until_the_queue_next_changes(mixed: Any) -> None:
    (rebuilt,) = rebuild([mixed])
    assert flush_once().written == []

    request_execution(mixed.ref)
    assert flush_once().written == [QueueRef(mixed.pk)]
    assert QueueStats.objects.get(action=mixed).queue_length == rebuilt.queue_length + 1


def test_it_leaves_actions_without_executions_without_a_row(make_action: Any, redis_db: Any) -> None:
    make_action("never_used")

    assert rebuild() == []
    assert not QueueStats.objects.exists()
