"""Redis loses everything: the gate's queues and the broker's task messages.
PostgreSQL still knows every execution, so the queues are rebuilt from it
and every execution still runs once, in request order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from executions.models import Execution, ExecutionStatus
from executions.services import request_execution
from queues.keys import QueueRef
from tests.conftest import wait_until
from tests.fault_actions import read_runs
from tests.faults import assert_gate_drained_and_counted, broker_backlog, run_manage
from tests.helpers import in_request_order, wait_all_terminal

pytestmark = [pytest.mark.acceptance, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus


def test_it_rebuilds_300_queued_executions_after_redis_is_flushed_and_runs_each_once_in_order(
    make_action: Any,
    worker_factory: Any,
    reaper_factory: Any,
    redis_db: redis.Redis,
    broker: redis.Redis,
    tmp_path: Path,
) -> None:
    log = str(tmp_path / "runs.log")
    action = make_action("survivor", entrypoint="tests.fault_actions.record_run", concurrency_limit=2)
    queue = QueueRef(action.pk)
    # No worker runs yet: two executions hold the slots (their task messages
    # wait in the broker) and 298 wait in the gate.
    ids = [str(request_execution(action.ref, {"index": i, "log": log}).pk) for i in range(300)]
    assert Execution.objects.filter(pk__in=ids, status=S.SCHEDULED).count() == 2
    assert redis_db.zcard(queue.waiting) == 298
    grants_before = int(redis_db.hget(queue.meta, "grant_seq") or 0)

    # FLUSHDB on both databases this test owns is FLUSHALL for this setup:
    # the gate's keys and the broker's messages (and its bindings) are gone.
    redis_db.flushdb()
    broker.flushdb()
    assert broker_backlog(broker).queued == 0

    # The worker rebuilds the missing queue when it starts.
    worker_factory(concurrency=2)
    wait_until(lambda: redis_db.exists(queue.meta), timeout=30, message="the worker to rebuild the queue")
    assert redis_db.zcard(queue.waiting) == 298
    # The operator's command is safe to run on top: it finds nothing missing.
    output = run_manage("reconcile_queues")
    assert f"{action.ref}: +0 waiting, +0 active" in output
    # The two granted executions lost their task messages; their leases run
    # out and the reaper puts them back at the head.
    reaper_factory()

    executions = wait_all_terminal(ids, timeout=240)

    assert all(e.status == S.COMPLETED for e in executions)
    runs = read_runs(log)
    assert sorted(runs) == list(range(300)), "an execution ran twice or never"
    ordered = in_request_order(executions)
    assert [e.result["index"] for e in ordered] == list(range(300))
    # Every execution was granted after the flush, in request order, numbered
    # on from the grants the database remembers.
    assert [e.grant_seq for e in ordered] == list(range(grants_before + 1, grants_before + 301))
    assert_gate_drained_and_counted([action])
    assert broker_backlog(broker).queued == 0
