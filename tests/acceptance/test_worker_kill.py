"""A worker killed with SIGKILL mid-run: its executions end `abandoned`
once their leases run out, their slots go to the queue head, and nobody
else notices but for the delay."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from executions.models import Execution, ExecutionStatus
from executions.services import request_execution
from queues.keys import QueueRef
from queues.redis_client import RedisClient
from tests.conftest import wait_until
from tests.fault_actions import read_runs
from tests.faults import assert_gate_drained_and_counted, kill_worker
from tests.helpers import in_request_order, max_concurrency, wait_all_terminal
from tests.stacks import STACKS, Stack, assert_ran_on

pytestmark = [pytest.mark.acceptance, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus
# How late past the bound a reaper pass may land on a loaded machine.
SCHEDULING_SLACK_SECONDS = 3.0


@pytest.mark.parametrize("stack", STACKS, indirect=True, ids=str)
def test_it_abandons_the_killed_workers_executions_and_runs_every_other_one_in_order(
    request: pytest.FixtureRequest,
    stack: Stack,
    make_action: Any,
    worker_factory: Any,
    reaper_factory: Any,
    fast_leases: tuple[float, float],
    redis_db: RedisClient,
    tmp_path: Path,
) -> None:
    lease, interval = fast_leases
    log = str(tmp_path / "runs.log")
    action = make_action("killable", entrypoint="tests.fault_actions.record_run", concurrency_limit=3)
    victim = worker_factory("victim", concurrency=2)
    survivor = worker_factory("survivor", concurrency=2)
    reaper_factory()

    ids = [
        str(request_execution(action.ref, {"index": i, "log": log, "seconds": 0.15}).pk) for i in range(200)
    ]

    granted_before: set[str] = set()

    def victim_just_started_one() -> bool:
        """Mid-way, the victim has just started a run (so it is still running
        when the kill lands); notes what is granted at that moment."""
        if Execution.objects.filter(pk__in=ids, status=S.COMPLETED).count() < 40:
            return False
        fresh = Execution.objects.filter(
            pk__in=ids,
            status=S.RUNNING,
            worker__startswith=f"{victim.name}@",
            started_at__gt=timezone.now() - timedelta(seconds=0.05),
        )
        if not fresh.exists():
            return False
        scheduled = Execution.objects.filter(pk__in=ids, status=S.SCHEDULED)
        granted_before.update(str(pk) for pk in scheduled.values_list("pk", flat=True))
        return True

    wait_until(victim_just_started_one, timeout=120, interval=0.005, message="the victim to start a run")
    killed_at = datetime.now(tz=UTC)
    kill_worker(victim)
    dead_at = datetime.now(tz=UTC)
    # Nothing but the reaper can move these now, and only after their leases run out.
    killed = {
        str(pk)
        for pk in Execution.objects.filter(
            pk__in=ids, status=S.RUNNING, worker__startswith=f"{victim.name}@"
        ).values_list("pk", flat=True)
    }
    # Slots held right after the kill: besides the killed runs, grants whose
    # task had not started, and grants the victim had just made in Redis but
    # not yet recorded. All of these wait for their leases to run out.
    granted_at_kill = (
        granted_before
        | set(redis_db.zrange(QueueRef(action.pk).active, 0, -1))
        | {
            str(pk)
            for pk in Execution.objects.filter(pk__in=ids, status=S.SCHEDULED).values_list("pk", flat=True)
        }
    ) - killed
    assert killed, "the victim was running nothing when killed"

    executions = wait_all_terminal(ids, timeout=240)

    by_id = {str(e.pk): e for e in executions}
    abandoned = {pk for pk, e in by_id.items() if e.status == S.ABANDONED}
    assert abandoned == killed
    assert all(e.status == S.COMPLETED for pk, e in by_id.items() if pk not in killed)
    for pk in killed:
        late = (by_id[pk].completed_at - killed_at).total_seconds()
        assert late <= lease + interval + SCHEDULING_SLACK_SECONDS, (
            f"{pk} abandoned {late:.1f} s after the kill"
        )
        assert "stopped renewing its lease" in by_id[pk].error
    # Nothing ran twice; everything but the killed runs ran (a run killed
    # on its way into the action may not have logged itself).
    runs = Counter(read_runs(log))
    assert max(runs.values()) == 1
    assert set(runs) >= {e.parameters["index"] for pk, e in by_id.items() if pk not in killed}
    assert max_concurrency(executions) <= 3
    # Grant order is request order for every execution the kill did not
    # touch; those it did start a lease late, after later requests.
    untouched = [e for e in in_request_order(executions) if str(e.pk) not in killed | granted_at_kill]
    grants = [e.grant_seq for e in untouched]
    assert grants == sorted(grants)
    assert len(untouched) >= 200 - 3 - 6
    assert all(e.worker.startswith(f"{survivor.name}@") for e in executions if e.started_at > dead_at)
    assert_gate_drained_and_counted([action])
    assert_ran_on(request, stack, [victim, survivor])
