"""Every metric of the queues, scraped from the real processes during a burst:
the web process (live server), a prefork `celery worker` (its exporter sums
its pool processes) and a `manage.py reap --loop` (its own exporter)."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from executions.exceptions import QueueFull
from executions.models import Execution, ExecutionStatus
from executions.services import cancel_execution, request_execution
from queues.keys import QueueRef
from tests.conftest import WorkerProcess, spawn, subprocess_env, wait_until
from tests.helpers import wait_all_terminal
from tests.prometheus import Samples, names, scrape, value

pytestmark = [pytest.mark.acceptance, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus

ISSUE_METRICS = {
    "attune_queue_length",
    "attune_queue_active",
    "attune_queue_max_concurrent",
    "attune_queue_oldest_age_seconds",
    "attune_queue_last_updated",
    "attune_executions_enqueued_total",
    "attune_executions_terminal_total",
    "attune_queue_rejected_total",
    "attune_leases_reclaimed_total",
    "attune_queue_wait_seconds_bucket",
    "attune_execution_duration_seconds_bucket",
    "attune_handoff_seconds_bucket",
}
LIMIT = 2
MAX_QUEUE_LENGTH = 8
REQUESTS = 12
SECONDS = 0.5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape_when_up(url: str, *, timeout: float = 30) -> Samples:
    def attempt() -> tuple[Samples] | None:
        try:
            # A tuple, so that an exporter with nothing counted yet is "up" too.
            return (scrape(url),)
        except requests.RequestException:
            return None

    return wait_until(attempt, timeout=timeout, interval=0.2, message=f"metrics at {url}")[0]


@contextlib.contextmanager
def reaper_loop(port: int, log_path: Path) -> Iterator[WorkerProcess]:
    env = subprocess_env({"ATTUNE_REAPER_INTERVAL_SECONDS": "0.5", "ATTUNE_REAPER_METRICS_PORT": str(port)})
    process = spawn([sys.executable, "manage.py", "reap", "--loop"], log_path, env)
    reaper = WorkerProcess("reaper", process, log_path, env)
    try:
        yield reaper
    finally:
        reaper.stop()


class DepthSampler(threading.Thread):
    """Scrapes the web /metrics in the background, keeping one action's depth."""

    def __init__(self, url: str, action_ref: str) -> None:
        super().__init__(daemon=True)
        self.url, self.action_ref = url, action_ref
        self.depths: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            depth = value(scrape(self.url), "attune_queue_length", action=self.action_ref, group="default")
            if depth is not None:
                self.depths.append(depth)
            self.stop.wait(0.1)


def test_it_exports_every_queue_metric_with_sensible_values_through_a_burst(
    make_action: Any, worker_factory: Any, live_server: Any, redis_db: Any, tmp_path: Path
) -> None:
    burst = make_action(
        "burst",
        entrypoint="tests.actions.fail_every_third",
        concurrency_limit=LIMIT,
        max_queue_length=MAX_QUEUE_LENGTH,
    )
    # Its task goes to a Celery queue no worker consumes, so its lease can run out.
    stranded = make_action("stranded", concurrency_limit=1, celery_queue="nobody-consumes-this")
    worker_port, reaper_port = free_port(), free_port()
    worker_factory(concurrency=3, env={"ATTUNE_WORKER_METRICS_PORT": str(worker_port)})
    worker_url = f"http://127.0.0.1:{worker_port}/metrics"
    web_url = f"{live_server.url}/metrics"
    scrape_when_up(worker_url)
    started_at = time.time()

    sampler = DepthSampler(web_url, burst.ref)
    sampler.start()
    admitted: list[str] = []
    rejected = 0
    # Each run takes SECONDS and requests take milliseconds: the first LIMIT
    # get free slots, the next MAX_QUEUE_LENGTH wait, the rest are refused.
    for index in range(REQUESTS):
        try:
            admitted.append(str(request_execution(burst.ref, {"index": index, "seconds": SECONDS}).pk))
        except QueueFull:
            rejected += 1
    cancelled = cancel_execution(admitted[-1])
    assert cancelled.status == S.CANCELLED
    executions = wait_all_terminal(admitted, timeout=120)
    wait_until(
        lambda: value(scrape(web_url), "attune_queue_active", action=burst.ref, group="default") == 0,
        timeout=30,
        message="every slot of the burst freed",
    )
    sampler.stop.set()
    sampler.join(timeout=10)

    assert (len(admitted), rejected) == (LIMIT + MAX_QUEUE_LENGTH, REQUESTS - LIMIT - MAX_QUEUE_LENGTH)

    # A lease left to run out: the reaper takes it back and counts it.
    lost = request_execution(stranded.ref, {})
    assert lost.status == S.SCHEDULED
    redis_db.zadd(QueueRef(stranded.pk).active, {str(lost.pk): 1}, xx=True)
    with reaper_loop(reaper_port, tmp_path / "reaper.log"):
        reaper_url = f"http://127.0.0.1:{reaper_port}/metrics"
        wait_until(
            lambda: (
                (value(scrape_when_up(reaper_url), "attune_leases_reclaimed_total", action=stranded.ref)) == 1
            ),
            timeout=60,
            message="the reaper to reclaim the expired lease",
        )
        reaper = scrape(reaper_url)

    web, worker = scrape(web_url), scrape(worker_url)

    # Every metric name of the issue is exported by one of the processes.
    exported = names(web) | names(worker) | names(reaper)
    assert not ISSUE_METRICS - exported, ISSUE_METRICS - exported

    # Depth rose during the burst and fell back to 0.
    assert max(sampler.depths) >= MAX_QUEUE_LENGTH - 2, sampler.depths
    assert sampler.depths[-1] == 0
    assert value(web, "attune_queue_length", action=burst.ref, group="default") == 0
    assert value(web, "attune_queue_active", action=burst.ref, group="default") == 0
    assert value(web, "attune_queue_max_concurrent", action=burst.ref) == LIMIT
    assert value(web, "attune_queue_oldest_age_seconds", action=burst.ref, group="default") == 0
    assert started_at - 1 <= (value(web, "attune_queue_last_updated", action=burst.ref) or 0) <= time.time()

    # Counters: the gate counts in Redis, and the web process serves them,
    # whichever process admitted, refused or ended an execution (the web
    # process the waiting ones, the worker's pool processes the runs). They
    # match the database, status by status.
    assert value(web, "attune_executions_enqueued_total", action=burst.ref) == len(admitted)
    assert value(web, "attune_queue_rejected_total", action=burst.ref, reason="queue_full") == rejected
    by_status = Counter(e.status for e in executions)
    assert by_status[S.CANCELLED] == 1 and by_status[S.FAILED] >= 1 and by_status[S.COMPLETED] >= 1
    for status, count in by_status.items():
        assert value(web, "attune_executions_terminal_total", action=burst.ref, status=status) == count, (
            status
        )
    assert not {"attune_executions_terminal_total", "attune_executions_enqueued_total"} & names(worker)

    # Histograms: one wait per start, one duration per run that ended, one
    # hand-off per start into a slot another execution freed.
    ran = [e for e in executions if e.started_at is not None]
    assert len(ran) == len(admitted) - 1
    assert value(worker, "attune_queue_wait_seconds_count", action=burst.ref) == len(ran)
    for status, count in Counter(e.status for e in ran).items():
        labels = {"action": burst.ref, "status": status}
        assert value(worker, "attune_execution_duration_seconds_count", **labels) == count
        mean = (value(worker, "attune_execution_duration_seconds_sum", **labels) or 0) / count
        assert SECONDS <= mean < SECONDS + 5, (status, mean)
    handoffs = value(worker, "attune_handoff_seconds_count", action=burst.ref)
    assert handoffs == len(ran) - LIMIT
    assert 0 <= (value(worker, "attune_handoff_seconds_sum", action=burst.ref) or 0) / len(ran) < 5
    # The last to start waited for everyone ahead of it: at least four rounds
    # of SECONDS after the first start (both stamped by worker clocks; its own
    # request may come a few ms after the first run began).
    slowest = max(ran, key=lambda e: e.started_at)
    first = min(ran, key=lambda e: e.started_at)
    assert (slowest.started_at - first.started_at).total_seconds() >= 4 * SECONDS
    assert (value(worker, "attune_queue_wait_seconds_sum", action=burst.ref) or 0) >= 4 * SECONDS

    # The reaper counts what it reclaims; only the web process exports queue gauges.
    assert value(reaper, "attune_leases_reclaimed_total", action=stranded.ref) == 1
    assert "attune_queue_length" not in names(worker) | names(reaper)
    assert Execution.objects.get(pk=lost.pk).status in (S.QUEUED, S.SCHEDULED)
