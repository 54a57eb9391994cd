"""Policies under real `celery worker` processes: a queue per host, cancel
at the limit, and priorities, on what the workers recorded."""

from __future__ import annotations

from typing import Any

import pytest

from executions.models import Execution, ExecutionStatus, Policy
from executions.services import request_execution
from tests.helpers import max_concurrency, wait_all_terminal, wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus
SCHEMA = {"type": "object", "properties": {"host": {}, "index": {"type": "integer"}, "seconds": {}}}


def test_one_deploy_per_host_three_hosts_in_parallel_fifo_within_each(
    make_action: Any, worker_factory: Any
) -> None:
    action = make_action("deploy", entrypoint="tests.actions.deploy", parameters_schema=SCHEMA)
    Policy.objects.create(
        name="one-per-host", scope="action", action=action, concurrency_limit=1, parameters=["host"]
    )
    worker_factory(concurrency=3)
    worker_factory(concurrency=3)

    ids = [
        str(request_execution(action.ref, {"host": host, "index": i, "seconds": 0.05}).pk)
        for i in range(20)
        for host in ("web-1", "web-2", "db-1")
    ]
    executions = wait_all_terminal(ids, timeout=180)

    assert all(e.status == S.COMPLETED for e in executions)
    for host in ("web-1", "web-2", "db-1"):
        on_host = [e for e in executions if e.parameters["host"] == host]
        assert max_concurrency(on_host) == 1, host
        by_start = sorted(on_host, key=lambda e: e.started_at)
        assert [e.result["index"] for e in by_start] == list(range(20)), host
    assert max_concurrency(executions) == 3


def test_cancel_at_the_limit_leaves_nothing_waiting(make_action: Any, worker_factory: Any) -> None:
    action = make_action("nightly", entrypoint="tests.actions.sleep_indexed", parameters_schema=SCHEMA)
    Policy.objects.create(
        name="one-report", scope="action", action=action, concurrency_limit=1, method="cancel"
    )
    worker_factory(concurrency=2)

    running = request_execution(action.ref, {"index": 0, "seconds": 1.0})
    refused = [request_execution(action.ref, {"index": i}) for i in range(1, 4)]
    wait_all_terminal([str(running.pk)], timeout=60)
    later = request_execution(action.ref, {"index": 4})
    done = wait_all_terminal([str(later.pk)], timeout=60)

    assert Execution.objects.get(pk=running.pk).status == S.COMPLETED
    for execution in refused:
        execution.refresh_from_db()
        assert execution.status == S.CANCELLED
        assert "policy 'one-report'" in execution.error
        assert execution.started_at is None
    assert done[0].status == S.COMPLETED


def test_behind_a_busy_slot_the_highest_priority_starts_first(make_action: Any, worker_factory: Any) -> None:
    action = make_action("urgent", entrypoint="tests.actions.sleep_indexed", concurrency_limit=1)
    worker_factory(concurrency=2)
    blocker = request_execution(action.ref, {"index": -1, "seconds": 1.0})
    wait_until(
        lambda: Execution.objects.get(pk=blocker.pk).status == S.RUNNING,
        timeout=30,
        message="the blocker to run",
    )

    priorities = [5, 1, 9, 5, 9, 0, 5, 7]
    ids = [str(request_execution(action.ref, {"index": i}, priority=p).pk) for i, p in enumerate(priorities)]
    executions = wait_all_terminal(ids, timeout=60)

    by_start = [e.result["index"] for e in sorted(executions, key=lambda e: e.started_at)]
    expected = [i for i, _ in sorted(enumerate(priorities), key=lambda item: -item[1])]
    assert by_start == expected
    assert max_concurrency([*executions, Execution.objects.get(pk=blocker.pk)]) == 1
