"""Driving executions through the gate from the benchmark process, and
reading back what the executions table recorded of them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bench.common import flush_gate

if TYPE_CHECKING:
    from executions.models import Action

NOOP_REF = "core.noop"
# How often completions are counted. The figures take their end from the
# recorded timestamps, so this only decides how soon a run is seen to end.
POLL_SECONDS = 0.05
# A run that makes no progress for this long has gone wrong; say so rather than hang.
STALL_SECONDS = 60.0


def configure_noop(limit: int | None, queue_room: int) -> Action:
    """core.noop at ``limit``, its queue long enough for ``queue_room``."""
    from executions.core_pack import load_core_pack
    from executions.models import Action

    load_core_pack()
    action = Action.objects.select_related("pack").get(ref=NOOP_REF)
    action.concurrency_limit = limit
    action.max_queue_length = max(action.max_queue_length, queue_room)
    action.save()
    return action


def request(count: int, batch: int, *, single: bool = False, action_ref: str = NOOP_REF) -> float:
    """Request ``count`` no-ops in batches of ``batch`` (or one call each
    when ``single``); returns the seconds it took."""
    from executions import services

    started = time.perf_counter()
    if single:
        for _ in range(count):
            services.request_execution(action_ref, {})
    else:
        for offset in range(0, count, batch):
            services.request_executions(action_ref, [{} for _ in range(min(batch, count - offset))])
    return time.perf_counter() - started


class Poller:
    """Waits for executions to complete, counting its own queries so that
    they can be taken out of the database's transaction counters."""

    def __init__(self) -> None:
        self.queries = 0

    def completed(self) -> int:
        from executions.models import Execution, ExecutionStatus

        self.queries += 1
        return Execution.objects.filter(status=ExecutionStatus.COMPLETED).count()

    def wait(self, count: int, interval: float = POLL_SECONDS) -> None:
        from django.db.models import Count

        from executions.models import Execution

        last, last_change = -1, time.monotonic()
        while (done := self.completed()) < count:
            if done != last:
                last, last_change = done, time.monotonic()
            elif time.monotonic() - last_change > STALL_SECONDS:
                rows = Execution.objects.values("status").annotate(n=Count("pk"))
                by_status = {row["status"]: row["n"] for row in rows}
                raise RuntimeError(
                    f"no execution completed for {STALL_SECONDS:.0f} s: {done} of {count} done; "
                    f"statuses: {by_status}"
                )
            time.sleep(interval)


@dataclass(frozen=True)
class Recorded:
    """What the executions table says of one run, times in epoch seconds."""

    queue_seqs: list[int]
    grant_seqs: list[int]
    enqueued: list[float]
    started: list[float]
    completed: list[float]

    def grant_order(self) -> list[int]:
        """Queue seqs in the order their slots were granted."""
        return [seq for _, seq in sorted(zip(self.grant_seqs, self.queue_seqs, strict=True))]

    def start_order(self) -> list[int]:
        """Queue seqs in the order the executions started running."""
        return [seq for _, seq in sorted(zip(self.started, self.queue_seqs, strict=True))]


def _epoch(value: datetime | None) -> float:
    assert value is not None
    return value.timestamp()


def recorded() -> Recorded:
    from executions.models import Execution, ExecutionStatus

    rows = list(
        Execution.objects.filter(status=ExecutionStatus.COMPLETED)
        .order_by("queue_seq")
        .values_list("queue_seq", "grant_seq", "enqueued_at", "started_at", "completed_at")
    )
    return Recorded(
        queue_seqs=[int(row[0]) for row in rows],
        grant_seqs=[int(row[1]) for row in rows],
        enqueued=[_epoch(row[2]) for row in rows],
        started=[_epoch(row[3]) for row in rows],
        completed=[_epoch(row[4]) for row in rows],
    )


def clear_executions() -> None:
    """Empty the executions table and the gate's Redis database (every
    primary of a cluster), leaving the broker alone: a worker may be
    connected to it."""
    from django.db import connection

    from executions.models import Execution

    # TRUNCATE, as the teams row empties its table: deleted rows would leave
    # dead tuples for autovacuum to clean up during the next row.
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {Execution._meta.db_table}")
    flush_gate()
