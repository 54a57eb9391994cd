"""Action callables for the fault tests; workers import them by dotted path.

Each run appends a line to a log file the test reads back, so a test can
tell how many times, and in which order, each execution really ran.
"""

from __future__ import annotations

import os
import time

from workers.exceptions import ActionError


def _append(log: str, line: str) -> None:
    # One small O_APPEND write per run: lines from concurrent processes never interleave.
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def record_run(index: int, log: str, seconds: float = 0.0, host: str | None = None) -> dict[str, int]:
    """Logs its index and sleeps; ``host`` is only there to split an
    action's queue by a policy's parameters."""
    _append(log, str(index))
    if seconds:
        time.sleep(seconds)
    return {"index": index}


def mixed(
    index: int, log: str, seconds: float = 0.0, fail: bool = False, host: str | None = None
) -> dict[str, int]:
    """Sleeps, then succeeds or fails as told; a long sleep meets the
    action's timeout. ``host`` only splits a queue by a policy's parameters."""
    _append(log, str(index))
    if seconds:
        time.sleep(seconds)
    if fail:
        raise ActionError(f"run {index} fails on purpose")
    return {"index": index}


def read_runs(log: str) -> list[int]:
    """The indexes logged by record_run/mixed, in the order they started."""
    if not os.path.exists(log):
        return []
    with open(log) as handle:
        return [int(line) for line in handle if line.strip()]


def record_deploy(index: int, log: str, host: str, seconds: float = 0.0) -> dict[str, object]:
    """record_run for an action with a queue per host."""
    _append(log, str(index))
    if seconds:
        time.sleep(seconds)
    return {"index": index, "host": host}
