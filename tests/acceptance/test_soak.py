"""A bounded, seeded random soak: four actions, requests arriving at random,
successes, failures, run timeouts, queue timeouts, cancels and one worker
killed with SIGKILL, then every invariant checked at the end. One action
has a queue per host (a policy with parameters), a rate limit and requests
of random priority.

The seed is printed; `ATTUNE_SOAK_SEED=<seed>` replays the same workload
(the timing of a real machine still varies)."""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from executions.exceptions import AlreadyTerminal
from executions.models import TERMINAL_STATUSES, Action, Execution, ExecutionStatus, Policy
from executions.services import cancel_execution, request_execution
from tests.conftest import WorkerProcess, wait_until
from tests.fault_actions import read_runs
from tests.faults import BrokerBacklog, broker_backlog, kill_worker, wait_gate_drained
from tests.helpers import max_concurrency, wait_all_terminal

pytestmark = [pytest.mark.acceptance, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus
REQUEST_PHASE_SECONDS = 35.0
# Messages a killed worker took but never started go back to the broker
# queue once this old, when the replacement worker starts.
VISIBILITY_TIMEOUT_SECONDS = 5
HOSTS = ("web-1", "web-2", "db-1")
HOSTS_RATE_PER_SECOND = 8


class Soak:
    """The workload: what was requested, and the kill."""

    def __init__(self, rng: random.Random, log: str) -> None:
        self.rng = rng
        self.log = log
        self.ids: list[str] = []
        self.next_index = 0

    def request(self, action: Action, priority: int = 5, **params: Any) -> None:
        index, self.next_index = self.next_index, self.next_index + 1
        execution = request_execution(
            action.ref, {"index": index, "log": self.log, **params}, priority=priority
        )
        self.ids.append(str(execution.pk))

    def host_run(self, action: Action) -> None:
        self.request(
            action,
            priority=self.rng.randint(0, 9),
            host=self.rng.choice(HOSTS),
            seconds=self.rng.uniform(0.02, 0.3),
            fail=self.rng.random() < 0.15,
        )

    def python_run(self, action: Action) -> None:
        roll = self.rng.random()
        if roll < 0.08:  # past the action's 1 s timeout
            self.request(action, seconds=2.5)
        else:
            self.request(action, seconds=self.rng.uniform(0.02, 0.2), fail=roll < 0.23)

    def shell_run(self, action: Action) -> None:
        roll = self.rng.random()
        seconds = 3 if roll < 0.08 else round(self.rng.uniform(0.02, 0.2), 3)
        self.request(action, seconds=seconds, code=1 if 0.08 <= roll < 0.23 else 0)

    def burst(self, action: Action) -> None:
        # More than a limit of 1 can serve in its 3 s queue timeout, whatever
        # the draw: six or more runs of at least 0.5 s leave the last of them
        # waiting past it, so queue timeouts happen in every soak rather than
        # only when the hand-offs happen to be slow.
        for _ in range(self.rng.randint(6, 9)):
            self.request(action, seconds=self.rng.uniform(0.5, 0.8))

    def cancel_one(self, *, spare: set[str]) -> None:
        live = set(
            Execution.objects.filter(pk__in=self.ids[-40:])
            .exclude(status__in=TERMINAL_STATUSES)
            .values_list("pk", flat=True)
        )
        candidates = sorted(str(pk) for pk in live if str(pk) not in spare)
        if candidates:
            with contextlib.suppress(AlreadyTerminal):
                cancel_execution(self.rng.choice(candidates))


def test_it_keeps_every_invariant_through_a_random_mix_of_failures_cancels_and_a_worker_kill(
    make_action: Any,
    worker_factory: Any,
    reaper_factory: Any,
    broker: redis.Redis,
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("ATTUNE_SOAK_SEED") or random.randrange(2**32))
    print(f"soak seed: {seed} (replay with ATTUNE_SOAK_SEED={seed})")
    rng = random.Random(seed)
    soak = Soak(rng, str(tmp_path / "runs.log"))
    python_action = make_action(
        "soak_python", entrypoint="tests.fault_actions.mixed", concurrency_limit=2, timeout_seconds=1
    )
    shell_action = make_action(
        "soak_shell",
        runner="shell",
        entrypoint="echo {index} >> {log}; sleep {seconds}; exit {code}",
        concurrency_limit=3,
        timeout_seconds=1,
    )
    queue_action = make_action(
        "soak_queue", entrypoint="tests.fault_actions.mixed", concurrency_limit=1, queue_timeout_seconds=3
    )
    hosts_action = make_action(
        "soak_hosts",
        entrypoint="tests.fault_actions.mixed",
        parameters_schema={"type": "object", "properties": {"host": {}}},
    )
    Policy.objects.create(
        name="soak-one-per-host",
        scope="action",
        action=hosts_action,
        concurrency_limit=1,
        parameters=["host"],
    )
    Policy.objects.create(
        name="soak-rate",
        scope="action",
        action=hosts_action,
        rate_limit_executions=HOSTS_RATE_PER_SECOND,
        rate_limit_window_seconds=1,
    )
    actions = [python_action, shell_action, queue_action, hosts_action]
    env = {"CELERY_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY_TIMEOUT_SECONDS)}
    victim = worker_factory("soak_victim", concurrency=3, env=env)
    worker_factory("soak_steady", concurrency=3, env=env)
    reaper_factory()

    started = time.monotonic()
    killed_at: float | None = None
    killed: set[str] = set()
    replacement: WorkerProcess | None = None
    while (elapsed := time.monotonic() - started) < REQUEST_PHASE_SECONDS:
        roll = rng.random()
        if roll < 0.35:
            soak.python_run(python_action)
        elif roll < 0.7:
            soak.shell_run(shell_action)
        elif roll < 0.9:
            soak.host_run(hosts_action)
        elif roll < 0.95:
            soak.burst(queue_action)
        if rng.random() < 0.12:
            # The killed runs are left to the reaper, to end `abandoned`.
            soak.cancel_one(spare=killed)
        if killed_at is None and elapsed > REQUEST_PHASE_SECONDS * 0.3:
            running = Execution.objects.filter(status=S.RUNNING, worker__startswith=f"{victim.name}@")
            if running.exists() or elapsed > REQUEST_PHASE_SECONDS * 0.6:
                kill_worker(victim)
                killed_at = time.monotonic()
                killed = {str(pk) for pk in running.values_list("pk", flat=True)}
        if (
            killed_at
            and replacement is None
            and time.monotonic() - killed_at > VISIBILITY_TIMEOUT_SECONDS + 1
        ):
            replacement = worker_factory("soak_replacement", concurrency=3, env=env, wait=False)
        time.sleep(rng.uniform(0.02, 0.15))

    executions = wait_all_terminal(soak.ids, timeout=180)

    by_status = Counter(e.status for e in executions)
    print(f"soak: {len(executions)} executions, {dict(by_status)}, {len(killed)} killed mid-run")
    # The mix really happened.
    assert {S.COMPLETED, S.FAILED, S.TIMEOUT, S.CANCELLED} <= set(by_status)
    assert any(e.error.startswith("Timed out waiting in the queue") for e in executions)
    assert any(e.status == S.TIMEOUT and e.started_at for e in executions)
    # Each killed run ended abandoned (or cancelled, if its cancel came first).
    assert {e.status for e in executions if str(e.pk) in killed} <= {S.ABANDONED, S.CANCELLED}
    assert not killed or S.ABANDONED in by_status
    # Exactly one terminal status each, with its time; nothing ran twice,
    # and what never started never ran.
    assert all(e.status in TERMINAL_STATUSES and e.completed_at for e in executions)
    runs = Counter(read_runs(soak.log))
    assert not runs or max(runs.values()) == 1
    for execution in executions:
        if execution.started_at is None:
            assert runs[execution.parameters["index"]] == 0, execution
        elif execution.status in (S.COMPLETED, S.FAILED):
            assert runs[execution.parameters["index"]] == 1, execution
    for action in actions[:3]:
        mine = [e for e in executions if e.action_id == action.pk]
        assert max_concurrency(mine) <= action.concurrency_limit, action.ref
    on_hosts = [e for e in executions if e.action_id == hosts_action.pk]
    assert on_hosts
    for host in HOSTS:
        assert max_concurrency([e for e in on_hosts if e.parameters["host"] == host]) <= 1, host
    # The rate counts starts; a grant the reaper gave back after the kill
    # may start once more in a window than the rate allows.
    starts = sorted(e.started_at for e in on_hosts if e.started_at is not None)
    busiest = max(
        (sum(1 for s in starts[i:] if (s - t).total_seconds() < 1) for i, t in enumerate(starts)), default=0
    )
    assert busiest <= HOSTS_RATE_PER_SECOND + 1, busiest
    # Redis agrees with the table: counters equal, queues empty, no slot held.
    wait_gate_drained(actions, timeout=30)
    # No task message left behind, not even one the killed worker had taken.
    wait_until(
        lambda: broker_backlog(broker) == BrokerBacklog(queued=0, unacked=0),
        timeout=30,
        message="the broker queue and unacked messages to empty",
    )
