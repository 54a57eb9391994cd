"""A process dies between committing a request and passing it through the
gate. The request stays `requested`, unknown to Redis, until the reaper
finds it and admits it, in the order the requests were made."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from executions.models import Execution, ExecutionStatus
from executions.services import request_execution
from queues import dispatch
from tests.conftest import wait_until
from tests.fault_actions import read_runs
from tests.faults import assert_gate_drained_and_counted
from tests.helpers import in_request_order, wait_all_terminal

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus


class ProcessDied(Exception):
    """Stands for the process dying right after its commit."""


def test_it_admits_requests_left_behind_by_a_crash_in_request_order_and_runs_them(
    make_action: Any,
    worker_factory: Any,
    reaper_factory: Any,
    fast_leases: tuple[float, float],
    tmp_path: Path,
) -> None:
    _, interval = fast_leases
    log = str(tmp_path / "runs.log")
    action = make_action("stranded", entrypoint="tests.fault_actions.record_run", concurrency_limit=1)
    worker_factory(concurrency=2)

    stranded = []
    with mock.patch.object(dispatch, "admit", autospec=True, side_effect=ProcessDied):
        for i in range(20):
            with pytest.raises(ProcessDied):
                request_execution(action.ref, {"index": i, "log": log})
            stranded.append(Execution.objects.latest("created"))
    # Committed, never seen by the gate.
    assert {e.status for e in Execution.objects.filter(pk__in=[e.pk for e in stranded])} == {S.REQUESTED}
    assert all(e.queue_seq is None for e in stranded)
    assert read_runs(log) == []

    reaper_factory()
    executions = wait_all_terminal([e.pk for e in stranded], timeout=120)

    assert all(e.status == S.COMPLETED for e in executions)
    by_request = in_request_order(executions)
    # Admitted in the order they were requested, granted and run in that order.
    assert [e.pk for e in by_request] == [e.pk for e in stranded]
    assert [e.grant_seq for e in by_request] == list(range(1, 21))
    assert read_runs(log) == list(range(20))
    for execution in executions:
        waited = (execution.enqueued_at - execution.created).total_seconds()
        # The reaper leaves a request one period to be admitted normally,
        # then admits it at its next pass.
        assert waited <= 2 * interval + 3.0, f"stranded {waited:.1f} s"
    assert_gate_drained_and_counted([action])


def test_it_admits_stranded_requests_after_those_already_queued(
    make_action: Any,
    worker_factory: Any,
    reaper_factory: Any,
    tmp_path: Path,
) -> None:
    log = str(tmp_path / "runs.log")
    action = make_action("mixed_stranded", entrypoint="tests.fault_actions.record_run", concurrency_limit=1)

    normal_before = request_execution(action.ref, {"index": 0, "log": log, "seconds": 0.5})
    with (
        mock.patch.object(dispatch, "admit", autospec=True, side_effect=ProcessDied),
        pytest.raises(ProcessDied),
    ):
        request_execution(action.ref, {"index": 1, "log": log})
    stranded = Execution.objects.latest("created")
    normal_after = request_execution(action.ref, {"index": 2, "log": log})
    # A later request cannot wait for the reaper: it was admitted at once and
    # is ahead of the stranded one in the queue.
    assert normal_after.status == S.QUEUED

    worker_factory(concurrency=2)
    reaper_factory()
    wait_until(
        lambda: Execution.objects.filter(pk=stranded.pk, queue_seq__isnull=False).exists(),
        timeout=30,
        message="the reaper to admit the stranded request",
    )
    executions = wait_all_terminal([normal_before.pk, stranded.pk, normal_after.pk], timeout=60)

    assert all(e.status == S.COMPLETED for e in executions)
    assert [e.pk for e in in_request_order(executions)] == [normal_before.pk, normal_after.pk, stranded.pk]
    assert read_runs(log) == [0, 2, 1]
    assert_gate_drained_and_counted([action])
