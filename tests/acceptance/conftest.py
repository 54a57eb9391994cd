"""Fixtures for the acceptance tests that kill processes: short leases, the
reaper as production runs it, and a client on the broker database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import WorkerProcess
from tests.faults import start_manage_loop

# One line per schemathesis run (tests/acceptance/test_api_fuzz.py), shown
# at the end of the session: operations, examples and failures.
FUZZ_SUMMARIES = pytest.StashKey[list[str]]()

# Short enough that a test sees a lease run out in seconds, long enough that
# a busy two-core machine never misses three renewals in a row.
LEASE_SECONDS = 4.0
REAPER_INTERVAL_SECONDS = 1.0


@pytest.fixture
def fast_leases(settings: Any) -> tuple[float, float]:
    """Short leases and a fast reaper for this process and for every worker
    or reaper started after it (they copy these settings into their env)."""
    settings.ATTUNE_LEASE_SECONDS = LEASE_SECONDS
    settings.ATTUNE_REAPER_INTERVAL_SECONDS = REAPER_INTERVAL_SECONDS
    return LEASE_SECONDS, REAPER_INTERVAL_SECONDS


@pytest.fixture
def reaper_factory(
    fast_leases: tuple[float, float], worker_factory: Any, tmp_path: Path
) -> Iterator[Callable[[], WorkerProcess]]:
    """Start `manage.py reap --loop` subprocesses; stopped before the workers."""
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        name = f"reaper{len(started) + 1}"
        reaper = start_manage_loop(name, ["reap", "--loop"], tmp_path / f"{name}.log")
        started.append(reaper)
        return reaper

    yield start
    for reaper in started:
        reaper.stop(timeout=10)


@pytest.fixture
def broker(redis_db: redis.Redis) -> redis.Redis:
    from django.conf import settings

    return redis.Redis.from_url(settings.CELERY_BROKER_URL, decode_responses=True)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    summaries = config.stash.get(FUZZ_SUMMARIES, [])
    if summaries:
        terminalreporter.section("schemathesis")
        for line in summaries:
            terminalreporter.write_line(line)
