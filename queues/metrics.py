"""Every Prometheus metric of Attune, and the lifecycle hooks that feed them.

Names carry units; labels are the action ref and a status or reason only,
so cardinality stays at actions x statuses.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Histogram

from executions.models import Execution

logger = logging.getLogger("attune.events")

EXECUTIONS_ENQUEUED = Counter(
    "attune_executions_enqueued_total", "Executions admitted through the gate.", ["action"]
)
EXECUTIONS_TERMINAL = Counter(
    "attune_executions_terminal_total", "Executions that reached a terminal status.", ["action", "status"]
)
QUEUE_REJECTED = Counter(
    "attune_queue_rejected_total", "Execution requests the gate refused.", ["action", "reason"]
)
LEASES_RECLAIMED = Counter(
    "attune_leases_reclaimed_total", "Expired slot leases taken back by the reaper.", ["action"]
)
QUEUE_WAIT = Histogram(
    "attune_queue_wait_seconds",
    "Time from request to start.",
    ["action"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
EXECUTION_DURATION = Histogram(
    "attune_execution_duration_seconds",
    "Time from start to terminal status.",
    ["action", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)


def enqueued(action_ref: str) -> None:
    EXECUTIONS_ENQUEUED.labels(action=action_ref).inc()


def rejected(action_ref: str, reason: str) -> None:
    QUEUE_REJECTED.labels(action=action_ref, reason=reason).inc()
    logger.info("rejected", extra={"action": action_ref, "reason": reason})


def granted(action_ref: str, execution_id: str) -> None:
    logger.debug("granted", extra={"action": action_ref, "execution_id": execution_id})


def started(execution: Execution) -> None:
    if execution.started_at is not None:
        QUEUE_WAIT.labels(action=execution.action_ref).observe(
            max(0.0, (execution.started_at - execution.created).total_seconds())
        )


def terminal(execution: Execution) -> None:
    EXECUTIONS_TERMINAL.labels(action=execution.action_ref, status=execution.status).inc()
    if execution.started_at is not None and execution.completed_at is not None:
        EXECUTION_DURATION.labels(action=execution.action_ref, status=execution.status).observe(
            max(0.0, (execution.completed_at - execution.started_at).total_seconds())
        )


def lease_reclaimed(action_ref: str) -> None:
    LEASES_RECLAIMED.labels(action=action_ref).inc()
