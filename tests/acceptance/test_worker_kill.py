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

from executions.models import Execution, ExecutionStatus, Policy
from executions.services import request_execution, request_executions
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


HOSTS = ("web-1", "web-2", "db-1")


def test_a_kill_amid_groups_priorities_and_a_rate_limit_loses_nothing_and_keeps_each_queues_order(
    make_action: Any,
    worker_factory: Any,
    reaper_factory: Any,
    fast_leases: tuple[float, float],
    tmp_path: Path,
) -> None:
    """One queue per host at limit 1, a rate limit over the action, mixed
    priorities: a worker killed mid-run has its runs abandoned, every other
    execution runs once, no host ever runs two, the rate holds, and within
    each host the untouched executions are granted by priority, then in
    request order."""
    log = str(tmp_path / "runs.log")
    schema = {"type": "object", "properties": {p: {} for p in ("host", "index", "log", "seconds")}}
    action = make_action(
        "killable_hosts", entrypoint="tests.fault_actions.record_run", parameters_schema=schema
    )
    Policy.objects.create(
        name="one-per-host", scope="action", action=action, concurrency_limit=1, parameters=["host"]
    )
    Policy.objects.create(
        name="rated", scope="action", action=action, rate_limit_executions=12, rate_limit_window_seconds=1
    )
    victim = worker_factory("victim", concurrency=2)
    worker_factory("survivor", concurrency=2)
    reaper_factory()

    parameters = [{"host": HOSTS[i % 3], "index": i, "log": log, "seconds": 0.15} for i in range(90)]
    priorities = [(i * 7) % 10 for i in range(90)]
    # One batch: every host's first request takes its slot, the rest wait
    # together, so priority (then request order) alone orders their grants.
    ids = [str(e.pk) for e in request_executions(action.ref, parameters, priorities=priorities)]

    # A run lasts 0.15 s: one started within the last 0.05 s is still
    # running when the kill lands, however slow the poll that saw it.
    wait_until(
        lambda: (
            Execution.objects.filter(pk__in=ids, status=S.COMPLETED).count() >= 15
            and Execution.objects.filter(
                pk__in=ids,
                status=S.RUNNING,
                worker__startswith=f"{victim.name}@",
                started_at__gt=timezone.now() - timedelta(seconds=0.05),
            ).exists()
        ),
        timeout=120,
        interval=0.005,
        message="the victim to have just started one, 15 done",
    )
    kill_worker(victim)
    killed = {
        str(pk)
        for pk in Execution.objects.filter(
            pk__in=ids, status=S.RUNNING, worker__startswith=f"{victim.name}@"
        ).values_list("pk", flat=True)
    }
    # Grants made but not started at the kill go back to their queue's head
    # once their lease runs out: granted again, out of turn.
    pending = {
        str(pk)
        for pk in Execution.objects.filter(pk__in=ids, status=S.SCHEDULED).values_list("pk", flat=True)
    }
    assert killed, "the victim was running nothing when killed"

    executions = wait_all_terminal(ids, timeout=240)

    by_id = {str(e.pk): e for e in executions}
    assert {pk for pk, e in by_id.items() if e.status == S.ABANDONED} == killed
    assert all(e.status == S.COMPLETED for pk, e in by_id.items() if pk not in killed)
    runs = Counter(read_runs(log))
    assert max(runs.values()) == 1
    assert set(runs) >= {e.parameters["index"] for pk, e in by_id.items() if pk not in killed}
    starts = sorted(e.started_at for e in executions if e.started_at is not None)
    window = timedelta(seconds=1)
    most = max(sum(1 for s in starts[i:] if s - start < window) for i, start in enumerate(starts))
    # A lease-expired grant given back holds no rate entry of its own beyond
    # its first grant; allow the one it may add.
    assert most <= 12 + 1, most
    for host in HOSTS:
        on_host = [e for e in executions if e.parameters["host"] == host]
        assert max_concurrency(on_host) == 1, host
        waited = [e for e in in_request_order(on_host)[1:] if str(e.pk) not in killed | pending]
        by_grant = sorted(waited, key=lambda e: e.grant_seq)
        assert [(e.priority, e.queue_seq) for e in by_grant] == sorted(
            ((e.priority, e.queue_seq) for e in waited), key=lambda pq: (-pq[0], pq[1])
        ), host
    assert_gate_drained_and_counted([action])
