"""Rebuilt counters count what the gate saw: a request cancelled before it
ever reached the gate was never enqueued, so it never ended there either."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
import redis

from executions.models import Execution, ExecutionStatus
from executions.services import cancel_execution, request_execution
from queues import dispatch
from queues.gate import get_gate
from queues.keys import QueueRef
from queues.reconcile import reconcile_action
from tests.faults import terminal_counts

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus


def _counters(action: Any) -> dict[str, Any]:
    snapshot = get_gate().snapshots([QueueRef(action.pk)])[0]
    return {
        "total_enqueued": snapshot.total_enqueued,
        "total_terminal": snapshot.total_terminal,
        "total_completed": snapshot.total_completed,
        "ended": {status: count for status, count in snapshot.terminal_by_status.items() if count},
    }


def test_it_rebuilds_counters_equal_to_the_live_ones(make_action: Any, redis_db: redis.Redis) -> None:
    action = make_action("counted", concurrency_limit=1)
    running = request_execution(action.ref, {})
    waiting = request_execution(action.ref, {})
    cancel_execution(waiting.pk)
    with (
        mock.patch.object(dispatch, "admit", autospec=True, side_effect=RuntimeError("died")),
        pytest.raises(RuntimeError),
    ):
        request_execution(action.ref, {})
    never_admitted = Execution.objects.get(status=S.REQUESTED)
    cancel_execution(never_admitted.pk)
    dispatch.finish(str(running.pk), S.FAILED, error="boom")
    live = _counters(action)
    assert {key: value for key, value in live.items() if key != "ended"} == terminal_counts(action)
    assert terminal_counts(action) == {"total_enqueued": 2, "total_terminal": 2, "total_completed": 0}
    assert live["ended"] == {S.CANCELLED: 1, S.FAILED: 1}

    redis_db.flushdb()
    reconcile_action(action)

    assert _counters(action) == live
