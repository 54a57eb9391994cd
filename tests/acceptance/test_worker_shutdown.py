"""A worker stopped with SIGTERM on every one of its processes (what
systemd does by default): its running executions end `abandoned` at once,
not a lease later, and their slots go to the next in line."""

from __future__ import annotations

import signal
from typing import Any

import pytest
import redis

from executions.models import Execution, ExecutionStatus
from executions.services import request_execution
from queues.keys import QueueRef
from tests.conftest import wait_until
from tests.faults import kill_worker

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus
# Long enough that only the SIGTERM path, not an expired lease, can end the
# run within the test's waits.
LEASE_SECONDS = 60.0


def test_it_ends_a_run_interrupted_by_a_worker_shutdown_at_once_and_hands_on_its_slot(
    settings: Any, make_action: Any, worker_factory: Any, redis_db: redis.Redis
) -> None:
    settings.ATTUNE_LEASE_SECONDS = LEASE_SECONDS
    action = make_action("interrupted", entrypoint="workers.core_actions.sleep", concurrency_limit=1)
    worker = worker_factory("stopping", concurrency=1)
    running = request_execution(action.ref, {"seconds": 120})
    waiting = request_execution(action.ref, {"seconds": 0})
    wait_until(
        lambda: Execution.objects.filter(pk=running.pk, status=S.RUNNING).exists(),
        timeout=60,
        message="the execution to run",
    )

    worker.kill(signal.SIGTERM)
    wait_until(
        lambda: Execution.objects.filter(pk=running.pk).exclude(status=S.RUNNING).exists(),
        timeout=LEASE_SECONDS / 3,
        message="the interrupted run to end",
    )
    # Celery's pool may hang in its own shutdown after its processes were
    # signalled too; that is the service manager's to finish with SIGKILL.
    kill_worker(worker)

    ended = Execution.objects.get(pk=running.pk)
    assert ended.status == S.ABANDONED
    assert ended.error == "The worker running this execution was stopped (SIGTERM) before it ended."
    # Its slot went to the next one, which waits for a worker to run it.
    assert Execution.objects.get(pk=waiting.pk).status == S.SCHEDULED
    assert redis_db.zrange(QueueRef(action.pk).active, 0, -1) == [str(waiting.pk)]
