"""Executions that wait longer than their action's queue_timeout_seconds end
`timeout` and leave the queue; the reaper checks."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from executions.models import Execution, ExecutionStatus
from executions.services import cancel_execution, request_execution
from queues.keys import QueueRef
from tests.conftest import wait_until
from tests.faults import assert_gate_drained_and_counted
from tests.helpers import wait_all_terminal

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus


def test_it_times_out_executions_stuck_behind_a_blocked_slot_and_takes_them_out_of_the_queue(
    make_action: Any,
    worker_factory: Any,
    reaper_factory: Any,
    fast_leases: tuple[float, float],
    redis_db: redis.Redis,
) -> None:
    _, interval = fast_leases
    action = make_action(
        "impatient",
        entrypoint="workers.core_actions.sleep",
        concurrency_limit=1,
        queue_timeout_seconds=2,
    )
    queue = QueueRef(action.pk)
    worker_factory(concurrency=2)
    blocker = request_execution(action.ref, {"seconds": 120})
    wait_until(
        lambda: Execution.objects.filter(pk=blocker.pk, status=S.RUNNING).exists(),
        timeout=60,
        message="the blocker to run",
    )
    waiting = [request_execution(action.ref, {"seconds": 0}).pk for _ in range(5)]
    assert redis_db.zcard(queue.waiting) == 5
    reaper_factory()

    executions = wait_all_terminal(waiting, timeout=60)

    for execution in executions:
        assert execution.status == S.TIMEOUT
        assert execution.error == (
            "Timed out waiting in the queue: waited more than 2 s "
            f"(the queue_timeout_seconds in force for action '{action.ref}')."
        )
        assert execution.started_at is None
        waited = (execution.completed_at - execution.enqueued_at).total_seconds()
        # Ended at the first reaper pass after the 2 s ran out; the margin
        # is for a pass that starts late on a loaded machine.
        assert 2 <= waited <= 2 + interval + 3.0, f"waited {waited:.1f} s"
    assert (redis_db.zcard(queue.waiting), redis_db.hlen(queue.enqueued)) == (0, 0)
    # The running one is untouched: a queue timeout is about waiting only.
    assert Execution.objects.get(pk=blocker.pk).status == S.RUNNING
    assert redis_db.zcard(queue.active) == 1

    cancel_execution(blocker.pk)
    wait_all_terminal([blocker.pk], timeout=60)
    assert_gate_drained_and_counted([action])
