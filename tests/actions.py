"""Action callables used by the tests; workers import them by dotted path."""

from __future__ import annotations

import time

from workers.exceptions import ActionError


def fail_every_third(index: int, seconds: float = 0.0) -> dict[str, int]:
    """Fails for index 2, 5, 8, ...: every third run of a 0-based sequence."""
    if seconds:
        time.sleep(seconds)
    if index % 3 == 2:
        raise ActionError(f"run {index} fails on purpose")
    return {"index": index}


def sleep_indexed(index: int, seconds: float = 0.0) -> dict[str, int]:
    time.sleep(seconds)
    return {"index": index}


def ignore_soft_time_limit(seconds: float) -> dict[str, float]:
    """Swallows Celery's soft time limit, as badly behaved code does, so
    only the hard limit can stop it."""
    from billiard.exceptions import SoftTimeLimitExceeded

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(deadline - time.monotonic())
        except SoftTimeLimitExceeded:
            continue
    return {"slept": seconds}


def deploy(index: int, host: str, seconds: float = 0.0) -> dict[str, object]:
    """A stand-in for a deploy to one host: what a per-host policy guards."""
    time.sleep(seconds)
    return {"index": index, "host": host}
