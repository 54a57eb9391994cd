"""Cancelling executions wherever they are: waiting in the queue, running a
Python callable, running a shell command, already ended, or ending at the
very moment the cancel arrives."""

from __future__ import annotations

import os
import random
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import connection

from executions.exceptions import AlreadyTerminal
from executions.models import Action, Execution, ExecutionStatus
from executions.services import cancel_execution, request_execution
from queues.keys import QueueRef
from tests.conftest import wait_until
from tests.fault_actions import read_runs
from tests.faults import assert_gate_drained_and_counted, wait_gate_drained
from tests.helpers import in_request_order, max_concurrency, wait_all_terminal

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus


def _limit_core_action(name: str, limit: int) -> Action:
    action = Action.objects.select_related("pack").get(ref=f"core.{name}")
    action.concurrency_limit = limit
    action.save()
    return action


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_running(execution_id: Any) -> Execution:
    wait_until(
        lambda: Execution.objects.filter(pk=execution_id, status=S.RUNNING).exists(),
        timeout=60,
        message=f"execution {execution_id} to run",
    )
    return Execution.objects.get(pk=execution_id)


def test_it_cancels_queued_executions_at_once_and_the_others_keep_their_order(
    make_action: Any, worker_factory: Any, redis_db: redis.Redis, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs.log")
    action = make_action("queued_cancel", entrypoint="tests.fault_actions.record_run", concurrency_limit=1)
    queue = QueueRef(action.pk)
    # No worker yet: the first holds the slot, nine wait.
    ids = [str(request_execution(action.ref, {"index": i, "log": log}).pk) for i in range(10)]

    for index in (3, 6):
        cancelled = cancel_execution(ids[index])
        assert cancelled.status == S.CANCELLED
        assert cancelled.error == "Cancelled while waiting in the queue."
        assert cancelled.completed_at is not None

    assert redis_db.zrange(queue.waiting, 0, -1) == [ids[i] for i in (1, 2, 4, 5, 7, 8, 9)]
    assert redis_db.hlen(queue.enqueued) == 7
    worker_factory(concurrency=2)
    executions = wait_all_terminal(ids, timeout=60)

    assert read_runs(log) == [0, 1, 2, 4, 5, 7, 8, 9]
    ran = [e for e in in_request_order(executions) if e.status == S.COMPLETED]
    assert [e.grant_seq for e in ran] == list(range(1, 9))
    assert {str(e.pk) for e in executions if e.status == S.CANCELLED} == {ids[3], ids[6]}
    assert_gate_drained_and_counted([action])


def test_it_stops_a_running_python_action_and_hands_its_slot_on_once(
    core_pack: Any, worker_factory: Any, redis_db: redis.Redis
) -> None:
    action = _limit_core_action("sleep", 1)
    worker_factory(concurrency=2)
    running = request_execution(action.ref, {"seconds": 60})
    waiting = request_execution(action.ref, {"seconds": 0})
    _wait_running(running.pk)
    # Give the action time to be inside its sleep, past the task's start-up.
    time.sleep(0.5)

    cancel_requested = datetime.now(tz=UTC)
    assert cancel_execution(running.pk).status == S.CANCELING
    executions = {e.pk: e for e in wait_all_terminal([running.pk, waiting.pk], timeout=60)}

    cancelled, next_one = executions[running.pk], executions[waiting.pk]
    assert cancelled.status == S.CANCELLED
    assert cancelled.error in ("Cancelled.", "ExecutionCancelled: The execution was cancelled while running")
    assert (cancelled.completed_at - cancel_requested).total_seconds() < 30
    assert next_one.status == S.COMPLETED
    assert next_one.started_at >= cancelled.completed_at
    # One release for the cancelled run, one grant to the next: the slot
    # was handed on exactly once.
    meta = redis_db.hgetall(QueueRef(action.pk).meta)
    assert (meta["total_terminal"], meta["total_completed"], meta["grant_seq"]) == ("2", "1", "2")
    assert_gate_drained_and_counted([action])


def test_it_kills_a_running_shell_command_and_every_process_it_started(
    core_pack: Any, worker_factory: Any, tmp_path: Path
) -> None:
    action = _limit_core_action("local", 1)
    pid_file = tmp_path / "command.pid"
    worker_factory(concurrency=2)
    running = request_execution(action.ref, {"cmd": f"echo $$ > {pid_file}; exec sleep 60"})
    waiting = request_execution(action.ref, {"cmd": "echo next"})
    wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=60, message="the pid")
    pid = int(pid_file.read_text())
    assert _alive(pid)

    assert cancel_execution(running.pk).status == S.CANCELING
    executions = {e.pk: e for e in wait_all_terminal([running.pk, waiting.pk], timeout=60)}

    assert executions[running.pk].status == S.CANCELLED
    wait_until(lambda: not _alive(pid), timeout=10, message=f"the command's process {pid} to be gone")
    assert executions[waiting.pk].status == S.COMPLETED
    assert executions[waiting.pk].result["stdout"] == "next\n"
    assert_gate_drained_and_counted([action])


def test_it_refuses_to_cancel_an_execution_that_has_ended(
    make_action: Any, worker_factory: Any, redis_db: redis.Redis
) -> None:
    action = make_action("ends_fast", concurrency_limit=1)
    worker_factory(concurrency=1)
    done = wait_all_terminal([request_execution(action.ref, {}).pk], timeout=60)[0]
    assert done.status == S.COMPLETED
    meta_before = redis_db.hgetall(QueueRef(action.pk).meta)

    with pytest.raises(AlreadyTerminal, match="has already ended with status 'completed'"):
        cancel_execution(done.pk)

    after = Execution.objects.get(pk=done.pk)
    assert (after.status, after.completed_at, after.error) == (S.COMPLETED, done.completed_at, "")
    assert redis_db.hgetall(QueueRef(action.pk).meta) == meta_before


def test_it_ends_each_execution_once_when_cancels_race_with_completions(
    make_action: Any, worker_factory: Any, reaper_factory: Any, tmp_path: Path
) -> None:
    seed = random.randrange(2**32)
    print(f"cancel race seed: {seed}")
    rng = random.Random(seed)
    log = str(tmp_path / "runs.log")
    action = make_action("race", entrypoint="tests.fault_actions.record_run", concurrency_limit=2)
    worker_factory(concurrency=2)
    # As in production: whatever a cancel's SIGTERM landing at the worst
    # moment leaves behind (a slot not yet handed on) is the reaper's.
    reaper_factory()
    ids = [
        str(request_execution(action.ref, {"index": i, "log": log, "seconds": rng.uniform(0.05, 0.3)}).pk)
        for i in range(60)
    ]
    delays = [rng.uniform(0.0, 0.35) for _ in ids]
    refused: list[str] = []

    def cancel_each_soon_after_it_starts() -> None:
        # Each execution gets its cancel `delay` after it is seen running,
        # so the cancels keep pace with the workers.
        waiting_to_start = dict(zip(ids, delays, strict=True))
        due: dict[str, float] = {}
        deadline = time.monotonic() + 120
        try:
            while (waiting_to_start or due) and time.monotonic() < deadline:
                now = time.monotonic()
                started = Execution.objects.filter(pk__in=list(waiting_to_start), started_at__isnull=False)
                for pk in started.values_list("pk", flat=True):
                    due[str(pk)] = now + waiting_to_start.pop(str(pk))
                for execution_id, at in sorted(due.items(), key=lambda item: item[1]):
                    if at > now:
                        break
                    del due[execution_id]
                    try:
                        cancel_execution(execution_id)
                    except AlreadyTerminal:
                        refused.append(execution_id)
                time.sleep(0.005)
        finally:
            connection.close()

    canceller = threading.Thread(target=cancel_each_soon_after_it_starts)
    canceller.start()
    executions = wait_all_terminal(ids, timeout=120)
    canceller.join(timeout=60)

    by_id = {str(e.pk): e for e in executions}
    assert {e.status for e in executions} <= {S.COMPLETED, S.CANCELLED}
    # A refused cancel found it completed; an accepted one ended it cancelled,
    # whether the run stopped or finished first.
    assert all(by_id[pk].status == S.COMPLETED for pk in refused)
    assert all(by_id[pk].status == S.CANCELLED for pk in set(ids) - set(refused))
    assert 0 < len(refused) < 60, "the delays never let a cancel race a completion"
    assert sorted(read_runs(log)) == list(range(60))
    assert max_concurrency(executions) <= 2
    wait_gate_drained([action], timeout=30)
