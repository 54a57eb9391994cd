"""The process's Redis connection for the gate."""

from __future__ import annotations

from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    # redis-py's pool notices a fork and reconnects, so one client per
    # process is safe under Celery's prefork pool.
    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True, health_check_interval=30)
