"""A plain Celery task for the baseline of bench/fifo_overhead.py; loaded
into the benchmark's worker with `--include bench.tasks`."""

from __future__ import annotations

import redis
from celery import shared_task
from django.conf import settings

DONE_KEY = "bench:plain:done"


@shared_task(name="bench.plain_noop", ignore_result=True)
def plain_noop() -> None:
    # Counting in Redis is how the benchmark sees completions without a
    # result backend; it is the plain path's only side effect.
    redis.Redis.from_url(settings.REDIS_URL).incr(DONE_KEY)
