"""Policies under real `celery worker` processes: a queue per host, cancel
at the limit, and priorities, on what the workers recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from executions.models import Execution, ExecutionStatus, Policy
from executions.services import request_execution, request_executions
from tests.fault_actions import read_runs
from tests.faults import assert_gate_drained_and_counted
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


@pytest.mark.slow
def test_groups_and_priorities_survive_a_redis_flush_and_each_runs_once(
    make_action: Any,
    worker_factory: Any,
    reaper_factory: Any,
    redis_db: Any,
    broker: Any,
    tmp_path: Path,
) -> None:
    log = str(tmp_path / "runs.log")
    action = make_action("deploy_flush", entrypoint="tests.fault_actions.record_deploy", parameters_schema={})
    Policy.objects.create(
        name="per-host-flush", scope="action", action=action, concurrency_limit=1, parameters=["host"]
    )
    # No worker yet: one execution per host holds its slot, the rest wait,
    # each host's queue in priority order.
    requested = [
        (
            host,
            i,
            priority,
            request_execution(action.ref, {"host": host, "index": i, "log": log}, priority=priority),
        )
        for i, priority in enumerate([5, 5, 1, 9, 5, 9, 0, 5, 7, 5])
        for host in ("web-1", "web-2", "db-1")
    ]
    redis_db.flushdb()
    broker.flushdb()

    worker_factory(concurrency=3)
    reaper_factory()
    ids = [str(e.pk) for *_, e in requested]
    executions = {str(e.pk): e for e in wait_all_terminal(ids, timeout=240)}

    assert all(e.status == S.COMPLETED for e in executions.values())
    assert sorted(read_runs(log)) == sorted(i for _, i, _, _ in requested), "an execution ran twice or never"
    for host in ("web-1", "web-2", "db-1"):
        on_host = [(i, p, executions[str(e.pk)]) for h, i, p, e in requested if h == host]
        assert max_concurrency([e for *_, e in on_host]) == 1, host
        started = [i for i, _, e in sorted(on_host, key=lambda item: item[2].started_at)]
        # The first held its slot, but its task message went with the flush:
        # its lease ran out and it went back to its own place, priority
        # first, then request order, like every other.
        assert started == [i for i, _, _ in sorted(on_host, key=lambda item: -item[1])], host
    assert_gate_drained_and_counted([action])


def test_a_rate_limit_of_10_per_second_over_100_requests_keeps_order_and_never_polls(
    make_action: Any, worker_factory: Any
) -> None:
    action = make_action("paced", entrypoint="tests.actions.sleep_indexed", parameters_schema={})
    Policy.objects.create(
        name="ten-a-second",
        scope="action",
        action=action,
        rate_limit_executions=10,
        rate_limit_window_seconds=1,
    )
    worker_factory(concurrency=2)

    ids = [str(e.pk) for e in request_executions(action.ref, [{"index": i} for i in range(100)])]
    executions = wait_all_terminal(ids, timeout=60)

    assert all(e.status == S.COMPLETED for e in executions)
    by_grant = sorted(executions, key=lambda e: e.grant_seq)
    assert [e.result["index"] for e in by_grant] == list(range(100))
    grants = [e.scheduled_at.timestamp() for e in by_grant]
    # Never more than 10 grants in any 1-second window: the 11th after any
    # grant comes a full second later (the gate counts on Redis's clock,
    # these times are the database's: a few ms of slack).
    gaps = [grants[i + 10] - grants[i] for i in range(len(grants) - 10)]
    assert min(gaps) >= 0.99, min(gaps)
    # And never more than 10 starts: each run moves its entry in the window
    # to its start, so the grant after it waits for the start plus a second.
    starts = sorted(e.started_at.timestamp() for e in executions)
    start_gaps = [starts[i + 10] - starts[i] for i in range(len(starts) - 10)]
    assert min(start_gaps) >= 0.99, min(start_gaps)
    # The first ten start at once, then ten each second: the last ten 9 s in.
    # A polling gate would lose up to its interval at each of the nine steps.
    elapsed = max(e.completed_at for e in executions) - min(e.created for e in executions)
    assert 9.0 <= elapsed.total_seconds() <= 11.5, elapsed
    print(
        f"rate 10/s x 100: {elapsed.total_seconds():.2f} s, closest 11 grants {min(gaps):.3f} s apart, "
        f"closest 11 starts {min(start_gaps):.3f} s"
    )
