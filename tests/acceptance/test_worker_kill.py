"""A worker killed with SIGKILL mid-run: its executions end `abandoned`
once their leases run out, their slots go to the queue head, and nobody
else notices but for the delay."""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from executions.models import Execution, ExecutionStatus
from executions.services import request_execution
from tests.conftest import wait_until
from tests.fault_actions import read_runs
from tests.faults import assert_gate_drained_and_counted
from tests.helpers import in_request_order, max_concurrency, wait_all_terminal

pytestmark = [pytest.mark.acceptance, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus
# How late past the bound a reaper pass may land on a loaded machine.
SCHEDULING_SLACK_SECONDS = 3.0


def test_it_abandons_the_killed_workers_executions_and_runs_every_other_one_in_order(
    make_action: Any,
    worker_factory: Any,
    reaper_factory: Any,
    fast_leases: tuple[float, float],
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

    def victim_is_busy() -> list[str]:
        done = Execution.objects.filter(pk__in=ids, status=S.COMPLETED).count()
        running = Execution.objects.filter(pk__in=ids, status=S.RUNNING, worker__startswith=f"{victim.name}@")
        return [str(pk) for pk in running.values_list("pk", flat=True)] if done >= 40 else []

    wait_until(victim_is_busy, timeout=120, interval=0.02, message="the victim to run something mid-way")
    granted_before = set(
        Execution.objects.filter(pk__in=ids, status=S.SCHEDULED).values_list("pk", flat=True)
    )
    victim.kill(signal.SIGKILL)
    killed_at = datetime.now(tz=UTC)
    # Nothing but the reaper can move these now, and only after their leases run out.
    killed = {
        str(pk)
        for pk in Execution.objects.filter(
            pk__in=ids, status=S.RUNNING, worker__startswith=f"{victim.name}@"
        ).values_list("pk", flat=True)
    }
    granted_at_kill = {
        str(pk)
        for pk in granted_before
        | set(Execution.objects.filter(pk__in=ids, status=S.SCHEDULED).values_list("pk", flat=True))
    }
    assert killed, "the victim was running nothing when killed"
    victim.process.wait(timeout=10)

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
    # Every execution ran exactly once: the killed ones started and died,
    # the ones the victim took but never started were handed to the survivor.
    runs = read_runs(log)
    assert sorted(runs) == list(range(200))
    assert max_concurrency(executions) <= 3
    # Grant order is request order for every execution the kill did not touch.
    untouched = [e for e in in_request_order(executions) if str(e.pk) not in killed | granted_at_kill]
    grants = [e.grant_seq for e in untouched]
    assert grants == sorted(grants)
    # At most 3 slots were granted just before and 3 just after the kill.
    assert len(untouched) >= 200 - len(killed) - 6
    assert all(e.worker.startswith(f"{survivor.name}@") for e in executions if e.started_at > killed_at)
    assert_gate_drained_and_counted([action])
