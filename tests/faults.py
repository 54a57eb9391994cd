"""Helpers for the fault tests: the processes production runs besides the
workers (the reaper, management commands), and the invariants every
fault test ends by checking."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import redis

from executions.models import TERMINAL_STATUSES, Action, Execution, ExecutionStatus
from queues.gate import get_gate
from tests.conftest import ROOT, WorkerProcess, spawn, subprocess_env, wait_until

S = ExecutionStatus
# Celery's keys in the broker database: the task queue (kombu adds a suffix
# per priority step) and the messages a worker took but never acknowledged.
BROKER_QUEUE = "default"
BROKER_UNACKED = "unacked"


def start_manage_loop(name: str, args: list[str], log_path: Path) -> WorkerProcess:
    """Start a long-running `manage.py` command in its own process group."""
    env = subprocess_env()
    process = spawn([sys.executable, "manage.py", *args], log_path, env)
    return WorkerProcess(name, process, log_path, env)


def run_manage(*args: str, timeout: float = 120) -> str:
    """Run a `manage.py` command to completion; return its output."""
    completed = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


@dataclass(frozen=True)
class BrokerBacklog:
    queued: int
    unacked: int


def broker_backlog(broker: redis.Redis) -> BrokerBacklog:
    """Task messages still in the broker. ``broker`` must decode responses."""
    queued = sum(
        int(broker.llen(key)) for key in broker.scan_iter(f"{BROKER_QUEUE}*") if broker.type(key) == "list"
    )
    return BrokerBacklog(queued=queued, unacked=int(broker.hlen(BROKER_UNACKED)))


def terminal_counts(action: Action) -> dict[str, int]:
    """What the gate's counters should read, computed from the table."""
    gated = Execution.objects.filter(action=action, queue_seq__isnull=False)
    return {
        "total_enqueued": gated.count(),
        "total_terminal": gated.filter(status__in=TERMINAL_STATUSES).count(),
        "total_completed": gated.filter(status=S.COMPLETED).count(),
    }


def assert_gate_drained_and_counted(actions: Iterable[Action]) -> None:
    """Every queue (every group of each action) empty, no slot held, and
    the Redis counters, added up over the groups, equal the counts over the
    executions table."""
    actions = list(actions)
    snapshots = get_gate().action_snapshots([action.pk for action in actions])
    for action, snapshot in zip(actions, snapshots, strict=True):
        assert snapshot.exists, f"{action.ref}: no queue state in Redis"
        assert (snapshot.waiting, snapshot.active) == (0, 0), (
            f"{action.ref}: {snapshot.waiting} still waiting, {snapshot.active} slots still held"
        )
        redis_totals = {
            "total_enqueued": snapshot.total_enqueued,
            "total_terminal": snapshot.total_terminal,
            "total_completed": snapshot.total_completed,
        }
        assert redis_totals == terminal_counts(action), action.ref


def statuses(ids: Iterable[str]) -> dict[str, str]:
    return {
        str(pk): status
        for pk, status in Execution.objects.filter(pk__in=list(ids)).values_list("pk", "status")
    }


def wait_gate_drained(actions: Iterable[Action], *, timeout: float) -> None:
    """Wait until no queue holds a waiting execution or a slot (a release a
    killed process never made is the reaper's, a lease later), then check
    the counters."""
    actions = list(actions)
    action_ids = [action.pk for action in actions]

    def drained() -> bool:
        return all(s.waiting == 0 and s.active == 0 for s in get_gate().action_snapshots(action_ids))

    wait_until(drained, timeout=timeout, interval=0.25, message="every queue to drain")
    assert_gate_drained_and_counted(actions)


def kill_worker(worker: WorkerProcess) -> None:
    """SIGKILL a worker's whole process group and wait until none of it is
    left, so nothing it ran can still write."""
    worker.kill(signal.SIGKILL)
    worker.process.wait(timeout=10)

    def group_gone() -> bool:
        try:
            os.killpg(worker.pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(group_gone, timeout=10, interval=0.02, message=f"worker {worker.name}'s processes to die")
    # A statement the dying process had already sent may still be committing.
    time.sleep(0.2)
