"""queue_stats under real processes. Under `celery worker`s, whose main
processes run the flushers: during a burst the row never lags the live
Redis counters by more than a second, it is written far less often than
the queue changes, and at rest it equals a count over the executions
table. A standalone `flush_queue_stats --loop` takes its turn and stops
cleanly."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection

from executions.models import Execution, ExecutionStatus
from executions.services import request_execution
from queues.keys import QueueRef, lock_key
from queues.models import QueueStats
from queues.stats import LOCK_NAME, counts_from_database
from tests.conftest import wait_until
from tests.faults import start_manage_loop
from tests.helpers import request_indexed, wait_all_terminal

pytestmark = [pytest.mark.acceptance, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus

EXECUTIONS = 300
LIMIT = 3
MAX_LAG_MS = 1000


@dataclass
class LagSampler:
    """Samples, in a thread, how stale the persisted row is: how long ago
    the oldest change it does not show yet happened.

    Each sample reads the Redis clock, then the queue's updated_ms, then the
    row. A change the row does not show happened after the last sample whose
    updated_ms the row has caught up with, so the time since that sample
    bounds the staleness from above. (Plain updated_ms minus last_updated
    would not do: a queue idle for an hour that changes now would read as
    an hour behind the instant it changes.)
    """

    action_id: int
    samples: list[tuple[int, int]] = field(default_factory=list)  # (redis ms, staleness ms)
    _seen: list[tuple[int, int | None]] = field(default_factory=list)  # (redis ms, updated_ms then)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=10)

    def staleness(self, now_ms: int, live: int | None, stored: int | None) -> int:
        if live is None or (stored is not None and stored >= live):
            return 0
        caught_up = [at for at, seen in self._seen if seen is None or (stored is not None and seen <= stored)]
        since = caught_up[-1] if caught_up else self._seen[0][0]
        return now_ms - since

    def _run(self) -> None:
        client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
        meta = QueueRef(self.action_id).meta
        try:
            while not self._stop.is_set():
                seconds, micros = client.time()
                now_ms = int(seconds) * 1000 + int(micros) // 1000
                raw = client.hget(meta, "updated_ms")
                live = None if raw is None else int(raw)
                row = (
                    QueueStats.objects.filter(action_id=self.action_id)
                    .values_list("last_updated", flat=True)
                    .first()
                )
                stored = None if row is None else int(row.timestamp() * 1000)
                self._seen.append((now_ms, live))
                self.samples.append((now_ms, self.staleness(now_ms, live, stored)))
                time.sleep(0.02)
        finally:
            connection.close()


def _row_writes() -> int:
    """Rows PostgreSQL has inserted or updated in queue_stats so far."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT n_tup_ins + n_tup_upd FROM pg_stat_user_tables WHERE relname = %s",
            [QueueStats._meta.db_table],
        )
        return int(cursor.fetchone()[0])


def test_it_keeps_queue_stats_within_a_second_and_exact_at_rest(
    make_action: Any, worker_factory: Any, artifacts_dir: Path
) -> None:
    action = make_action("stats_burst", entrypoint="tests.actions.sleep_indexed", concurrency_limit=LIMIT)
    workers = [worker_factory(concurrency=2), worker_factory(concurrency=2)]
    writes_before = _row_writes()
    sampler = LagSampler(action.pk)
    sampler.start()

    ids = request_indexed(action.ref, EXECUTIONS, seconds=0.02)
    executions = wait_all_terminal(ids, timeout=300)
    wait_until(
        lambda: QueueStats.objects.filter(action=action, total_terminal=EXECUTIONS, active_count=0).exists(),
        timeout=30,
        message="the row to show the burst finished",
    )
    sampler.stop()

    # At rest the row is a count over the executions table.
    row = QueueStats.objects.get(action=action)
    (counted,) = counts_from_database([action])
    assert row.as_dict() == counted.as_dict()
    assert row.as_dict() == {
        "queue_length": 0,
        "active_count": 0,
        "max_concurrent": LIMIT,
        "oldest_enqueued_at": None,
        "total_enqueued": EXECUTIONS,
        "total_completed": EXECUTIONS,
        "total_terminal": EXECUTIONS,
    }
    assert all(e.status == S.COMPLETED for e in executions)

    # While the burst ran, the row was never more than a second behind.
    lags = [lag for _, lag in sampler.samples]
    assert any(lags), "the sampler never saw the row behind: it did not sample the burst"
    report = artifacts_dir / "queue_stats_lag.txt"
    report.write_text("\n".join(f"{at} {lag}" for at, lag in sampler.samples) + "\n")
    assert len(lags) >= 50, f"too few samples to judge freshness: {len(lags)}"
    assert max(lags) <= MAX_LAG_MS, f"row lagged {max(lags)} ms behind the live queue (samples in {report})"

    # Coalesced: each execution changes its queue at least three times
    # (admitted, granted, released); the row was written far less often.
    for worker in workers:
        worker.stop()  # their connections close, so PostgreSQL counts their writes
    wait_until(lambda: _row_writes() > writes_before, timeout=10, message="PostgreSQL to count the writes")
    writes = _row_writes() - writes_before
    state_changes = 3 * EXECUTIONS
    with report.open("a") as out:
        out.write(f"# {writes} row writes for at least {state_changes} queue state changes\n")
    assert writes < EXECUTIONS, f"{writes} row writes for {state_changes} state changes"
    assert Execution.objects.filter(action=action).count() == EXECUTIONS


def test_it_runs_a_standalone_flusher_that_stops_cleanly_on_sigterm(
    make_action: Any, redis_db: redis.Redis, tmp_path: Path
) -> None:
    action = make_action("standalone", concurrency_limit=1)
    for _ in range(3):
        request_execution(action.ref)
    flusher = start_manage_loop("flusher", ["flush_queue_stats", "--loop"], tmp_path / "flusher.log")
    try:
        wait_until(
            lambda: QueueStats.objects.filter(action=action, queue_length=2, active_count=1).exists(),
            timeout=30,
            message="the standalone flusher to write the row",
        )
        assert redis_db.exists(lock_key(LOCK_NAME))

        flusher.process.send_signal(signal.SIGTERM)
        assert flusher.process.wait(timeout=15) == 0, flusher.log()
    finally:
        flusher.stop()
    assert flusher.log().rstrip().endswith("stopped")
    # It let go of its turn rather than leaving the others to wait out the TTL.
    assert not redis_db.exists(lock_key(LOCK_NAME))
