"""Plain Celery tasks for the baselines of bench/throughput.py and
bench/stats_overhead.py; loaded into the benchmark's worker with
`--include bench.tasks`. Each is what a team would write without Attune."""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.db import connection
from django.utils import timezone

from queues.redis_client import RedisClient, connect

DONE_KEY = "bench:plain:done"

# The Redis semaphore of semaphore_noop, and what it records for the figures.
SEMAPHORE_KEY = "bench:semaphore:held"
SEMAPHORE_STARTS_KEY = "bench:semaphore:starts"
SEMAPHORE_RELEASES_KEY = "bench:semaphore:releases"
SEMAPHORE_RETRIES_KEY = "bench:semaphore:retries"
# How long a task that found the semaphore full waits before trying again:
# a tenth of a second is about the shortest retry delay a team would pick.
SEMAPHORE_COUNTDOWN_SECONDS = 0.1

TASK_ROW_TABLE = "bench_task_row"


@lru_cache(maxsize=1)
def _redis() -> RedisClient:
    # One client per pool process, as a team's module-level client would be;
    # a new client per task would add a connect to every run. The gate's
    # Redis, through the cluster client when it is a cluster: what a team
    # on that cluster would count in.
    return connect(settings.REDIS_URL)


@shared_task(name="bench.plain_noop", ignore_result=True)
def plain_noop() -> None:
    # Counting in Redis is how the benchmark sees completions without a
    # result backend; it is the plain path's only side effect.
    _redis().incr(DONE_KEY)


@shared_task(name="bench.row_noop", ignore_result=True)
def row_noop(row_id: str) -> None:
    """A no-op that keeps its row as django-celery-results would: started,
    then success, each an UPDATE of its own (autocommit)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TASK_ROW_TABLE} SET status = 'started', started_at = %s WHERE id = %s",
            [timezone.now(), row_id],
        )
        cursor.execute(
            f"UPDATE {TASK_ROW_TABLE} SET status = 'success', completed_at = %s WHERE id = %s",
            [timezone.now(), row_id],
        )


@shared_task(name="bench.semaphore_noop", bind=True, ignore_result=True)
def semaphore_noop(self: Task, index: int, limit: int) -> None:
    """The usual Celery idiom for a concurrency limit: a Redis counter as a
    semaphore, and a retry later when it is full."""
    client = _redis()
    if client.incr(SEMAPHORE_KEY) > limit:
        client.decr(SEMAPHORE_KEY)
        client.incr(SEMAPHORE_RETRIES_KEY)
        raise self.retry(countdown=SEMAPHORE_COUNTDOWN_SECONDS, max_retries=None)
    try:
        client.rpush(SEMAPHORE_STARTS_KEY, f"{index}:{time.time():.6f}")
        _noop()
        client.rpush(SEMAPHORE_RELEASES_KEY, f"{time.time():.6f}")
    finally:
        client.decr(SEMAPHORE_KEY)


def _noop(*args: Any) -> None:
    return None
