"""The worker registry under real workers: who ran what, heartbeats, and a
killed worker marked offline by the reaper."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from executions.models import Execution, ExecutionStatus
from executions.services import request_execution
from queues.reaper import WORKER_SILENT_LEASES
from tests.conftest import wait_until
from tests.helpers import wait_all_terminal
from workers.models import Worker, WorkerStatus

pytestmark = [pytest.mark.acceptance, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus


def test_it_records_who_runs_what_keeps_heartbeats_and_marks_a_killed_worker_offline(
    make_action: Any,
    worker_factory: Any,
    reaper_factory: Any,
    fast_leases: tuple[float, float],
) -> None:
    lease, interval = fast_leases
    action = make_action("registered", entrypoint="workers.core_actions.sleep", concurrency_limit=1)
    doomed = worker_factory("doomed", concurrency=1)
    reaper_factory()
    running = request_execution(action.ref, {"seconds": 120})
    wait_until(
        lambda: Execution.objects.filter(pk=running.pk, status=S.RUNNING).exists(),
        timeout=60,
        message="the execution to run",
    )

    row = Worker.objects.get(hostname__startswith=f"{doomed.name}@")
    assert row.status == WorkerStatus.ONLINE
    assert row.pid == doomed.pid
    assert Execution.objects.get(pk=running.pk).worker == row.hostname
    assert [e.pk for e in row.running_executions()] == [running.pk]
    first_beat = row.last_heartbeat
    wait_until(
        lambda: Worker.objects.get(pk=row.pk).last_heartbeat > first_beat,
        timeout=lease * 3,
        message="a heartbeat",
    )

    doomed.kill(signal.SIGKILL)
    doomed.process.wait(timeout=10)
    # The slot comes back after one lease; the row after a few.
    wait_until(
        lambda: Worker.objects.get(pk=row.pk).status == WorkerStatus.OFFLINE,
        timeout=lease * WORKER_SILENT_LEASES + interval + 10,
        message="the reaper to mark the killed worker offline",
    )
    row.refresh_from_db()
    assert row.stopped is None, "killed, not shut down: it never said goodbye"
    assert Execution.objects.get(pk=running.pk).status == S.ABANDONED
    assert not row.running_executions().exists()

    # A worker that shuts down says so itself.
    polite = worker_factory("polite", concurrency=1)
    done = request_execution(action.ref, {"seconds": 0})
    assert wait_all_terminal([done.pk], timeout=60)[0].worker.startswith(f"{polite.name}@")
    polite.stop()
    polite_row = Worker.objects.get(hostname__startswith=f"{polite.name}@")
    assert polite_row.status == WorkerStatus.OFFLINE
    assert polite_row.stopped is not None
