"""The gate under real `celery worker` processes: order, limits, failures,
timeouts. Each test asserts on what the gate and the workers recorded."""

from __future__ import annotations

from typing import Any

import pytest

from executions.models import Execution, ExecutionStatus
from executions.services import request_execution
from tests.helpers import in_request_order, max_concurrency, request_indexed, wait_all_terminal
from tests.stacks import STACKS, Stack, assert_ran_on

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus


def test_it_grants_1000_executions_in_request_order_never_more_than_5_at_once(
    make_action: Any, worker_factory: Any
) -> None:
    action = make_action("fifo_1000", entrypoint="tests.actions.sleep_indexed", concurrency_limit=5)
    worker_factory(concurrency=3)
    worker_factory(concurrency=3)

    ids = request_indexed(action.ref, 1000, seconds=0.005)
    executions = wait_all_terminal(ids, timeout=300)

    assert [e.status for e in executions].count(S.COMPLETED) == 1000
    by_request = in_request_order(executions)
    assert [e.queue_seq for e in by_request] == list(range(1, 1001))
    # The grant sequence, recorded by the gate, follows request order exactly.
    assert [e.grant_seq for e in by_request] == list(range(1, 1001))
    assert [e.result["index"] for e in by_request] == list(range(1000))
    assert max_concurrency(executions) <= 5
    # Both workers took part.
    assert len({e.worker for e in executions}) == 2


@pytest.mark.parametrize("stack", STACKS, indirect=True, ids=str)
def test_it_starts_in_request_order_with_limit_1_and_failures_release_their_slots(
    request: pytest.FixtureRequest, stack: Stack, make_action: Any, worker_factory: Any
) -> None:
    action = make_action(
        "every_third_fails", entrypoint="tests.actions.fail_every_third", concurrency_limit=1
    )
    workers = [worker_factory(concurrency=2), worker_factory(concurrency=2)]

    ids = request_indexed(action.ref, 30)
    executions = wait_all_terminal(ids, timeout=120)

    by_start = sorted(executions, key=lambda e: e.started_at)
    assert [e.queue_seq for e in by_start] == list(range(1, 31))
    assert max_concurrency(executions) == 1
    statuses = [e.status for e in in_request_order(executions)]
    assert statuses == [S.FAILED if i % 3 == 2 else S.COMPLETED for i in range(30)]
    failed = [e for e in executions if e.status == S.FAILED]
    assert len(failed) == 10
    assert all("fails on purpose" in e.error for e in failed)
    assert_ran_on(request, stack, workers)


@pytest.mark.parametrize("stack", STACKS, indirect=True, ids=str)
def test_it_holds_a_limit_of_3_granting_in_request_order_across_two_workers(
    request: pytest.FixtureRequest, stack: Stack, make_action: Any, worker_factory: Any
) -> None:
    action = make_action("limit_3", entrypoint="tests.actions.sleep_indexed", concurrency_limit=3)
    workers = [worker_factory(concurrency=2), worker_factory(concurrency=2)]

    ids = request_indexed(action.ref, 60, seconds=0.1)
    executions = wait_all_terminal(ids, timeout=120)

    assert [e.status for e in executions].count(S.COMPLETED) == 60
    by_request = in_request_order(executions)
    assert [e.grant_seq for e in by_request] == list(range(1, 61))
    assert [e.result["index"] for e in by_request] == list(range(60))
    # Four processes could run four at once; the gate lets three.
    assert max_concurrency(executions) == 3
    assert len({e.worker for e in executions}) == 2
    assert_ran_on(request, stack, workers)


def test_it_keeps_actions_independent_a_slow_action_never_delays_the_others(
    make_action: Any, worker_factory: Any
) -> None:
    slow = make_action("slow", entrypoint="tests.actions.sleep_indexed", concurrency_limit=1)
    medium = make_action("medium", entrypoint="tests.actions.sleep_indexed", concurrency_limit=2)
    fast = make_action("fast", entrypoint="tests.actions.sleep_indexed", concurrency_limit=5)
    worker_factory(concurrency=4)
    worker_factory(concurrency=4)

    slow_ids = request_indexed(slow.ref, 50, seconds=0.3)
    medium_ids = request_indexed(medium.ref, 50, seconds=0.01)
    fast_ids = request_indexed(fast.ref, 50, seconds=0.01)

    others = wait_all_terminal(medium_ids + fast_ids, timeout=60)
    slow_done = Execution.objects.filter(pk__in=slow_ids, status=S.COMPLETED).count()
    # 50 x 0.3 s at limit 1 takes 15 s; the other two finished long before.
    assert slow_done < 40, f"the fast actions waited for the slow one ({slow_done}/50 slow done)"
    assert all(e.status == S.COMPLETED for e in others)

    slow_executions = wait_all_terminal(slow_ids, timeout=60)
    for action, group in ((slow, slow_executions), (medium, others), (fast, others)):
        mine = [e for e in group if e.action_id == action.pk]
        assert len(mine) == 50
        assert max_concurrency(mine) <= action.concurrency_limit
        assert [e.grant_seq for e in in_request_order(mine)] == list(range(1, 51))


@pytest.mark.parametrize(
    ("entrypoint", "ended_by"),
    [
        # The soft time limit interrupts the action inside its worker process.
        ("workers.core_actions.sleep", "SoftTimeLimitExceeded"),
        # An action that swallows the soft limit is killed at the hard one.
        ("tests.actions.ignore_soft_time_limit", "TimeLimitExceeded"),
    ],
)
def test_it_ends_an_action_past_its_timeout_as_timeout_and_starts_the_next(
    make_action: Any, worker_factory: Any, settings: Any, entrypoint: str, ended_by: str
) -> None:
    settings.ATTUNE_HARD_TIMEOUT_GRACE_SECONDS = 1.0
    action = make_action("sleepy", entrypoint=entrypoint, concurrency_limit=1, timeout_seconds=1)
    worker_factory(concurrency=2)

    too_long = request_execution(action.ref, {"seconds": 30})
    next_one = request_execution(action.ref, {"seconds": 0.1})
    executions = {e.pk: e for e in wait_all_terminal([too_long.pk, next_one.pk], timeout=30)}

    timed_out, completed = executions[too_long.pk], executions[next_one.pk]
    assert timed_out.status == S.TIMEOUT
    assert timed_out.error == f"Timed out: ran longer than its timeout_seconds ({ended_by})."
    assert (timed_out.completed_at - timed_out.started_at).total_seconds() < 10
    assert completed.status == S.COMPLETED
    assert completed.started_at >= timed_out.completed_at
