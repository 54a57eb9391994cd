"""Every Prometheus metric of Attune, the lifecycle hooks that feed them, and
how each kind of process exposes them.

Names carry units; labels are the action ref and a status or reason only,
so cardinality stays at actions x statuses.

Who serves what (docs/ops-runbook-queues.md, "Metrics"):

- the web process's ``/metrics`` (``queues/views.py``): its own histograms,
  django-prometheus's, and, read from Redis by ``QueueCollector`` at scrape
  time, the ``attune_queue_*`` gauges and the gate's exact counters
  (``attune_executions_enqueued_total``, ``attune_executions_terminal_total``,
  ``attune_queue_rejected_total``): the gate's scripts count every admission,
  end and refusal in Redis, so the totals are right whichever process
  admitted or ended an execution (a one-off command, any of several web
  processes) and survive the restart of any of them;
- a Celery worker's main process, on ``ATTUNE_WORKER_METRICS_PORT``: the
  counters and histograms of the main process and of every prefork pool
  process, summed by prometheus_client's multiprocess mode (each process
  writes to its own file under ``PROMETHEUS_MULTIPROC_DIR``, which
  ``attune/celery.py`` gives every worker);
- the reaper loop, on ``ATTUNE_REAPER_METRICS_PORT``: its own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING

from django.conf import settings
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from executions.models import Execution

logger = logging.getLogger("attune.events")

# The Celery message header carrying when the slot an execution was granted
# was freed (unix seconds, the releasing process's clock), for the hand-off time.
RELEASED_AT_HEADER = "attune_released_at"
# The header carrying when the grant was made (unix seconds, the granting
# process's clock), so the worker knows how much of the lease is left.
GRANTED_AT_HEADER = "attune_granted_at"

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
HANDOFF = Histogram(
    "attune_handoff_seconds",
    "Time from a slot's release to the start of the waiting execution it was handed to.",
    ["action"],
    # A hand-off is a Redis script, a database update and a Celery message:
    # milliseconds when healthy, seconds when workers are saturated.
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def rejected(action_ref: str, reason: str, count: int = 1) -> None:
    # Counted by the gate itself (attune_queue_rejected_total); this is the log line.
    logger.info("rejected", extra={"action": action_ref, "reason": reason, "count": count})


def granted(action_ref: str, execution_id: str) -> None:
    logger.debug("granted", extra={"action": action_ref, "execution_id": execution_id})


def started(execution: Execution, released_at: float | None = None) -> None:
    """An execution started running. ``released_at`` is when the slot it got
    was freed by another execution, None when it got a free slot on admission."""
    if execution.started_at is None:
        return
    QUEUE_WAIT.labels(action=execution.action_ref).observe(
        max(0.0, (execution.started_at - execution.created).total_seconds())
    )
    if released_at is not None:
        # Two hosts' clocks: a small skew may make this negative; count it as instant.
        HANDOFF.labels(action=execution.action_ref).observe(
            max(0.0, execution.started_at.timestamp() - released_at)
        )


def terminal(execution: Execution) -> None:
    """An execution ended and left the gate (the gate counts it:
    attune_executions_terminal_total); observe how long it ran."""
    if execution.started_at is not None and execution.completed_at is not None:
        EXECUTION_DURATION.labels(action=execution.action_ref, status=execution.status).observe(
            max(0.0, (execution.completed_at - execution.started_at).total_seconds())
        )


def lease_reclaimed(action_ref: str) -> None:
    LEASES_RECLAIMED.labels(action=action_ref).inc()


# --- queue gauges, read at scrape time ------------------------------------------


class QueueCollector(Collector):
    """The ``attune_queue_*`` gauges and the gate's exact counters of every
    action, from the gate's live counters in Redis (one constant number of
    round trips, however many actions; the executions table is never read)."""

    def describe(self) -> Iterable[Metric]:
        # Registration asks for the names; answering without Redis keeps
        # start-up independent of it.
        return [*self._families(), *self._counter_families()]

    def collect(self) -> Iterable[Metric]:
        from queues.live import busiest_groups, live_queues

        up = GaugeMetricFamily(
            "attune_queue_collector_up",
            "1 if the last scrape read the queues from Redis and the database, else 0.",
        )
        try:
            queues = live_queues()
        except Exception:  # a scrape must answer even when Redis or the database is away
            logger.exception("queue metrics: cannot read the queues")
            up.add_metric([], 0)
            yield up
            return
        length, active, limit, oldest, updated = self._families()
        enqueued, ended, refused = self._counter_families()
        max_groups = int(settings.ATTUNE_METRICS_MAX_GROUPS)
        for queue in queues:
            labels = [queue.action_ref]
            for group in busiest_groups(queue.groups, max_groups):
                length.add_metric([queue.action_ref, group.name], group.queue_length)
                active.add_metric([queue.action_ref, group.name], group.active_count)
                oldest.add_metric([queue.action_ref, group.name], group.oldest_age_seconds or 0.0)
            limit.add_metric(labels, float("inf") if queue.max_concurrent is None else queue.max_concurrent)
            if queue.last_updated is not None:
                updated.add_metric(labels, queue.last_updated.timestamp())
            enqueued.add_metric(labels, queue.total_enqueued)
            for status, count in sorted(queue.terminal_by_status.items()):
                ended.add_metric([queue.action_ref, status], count)
            for reason, count in sorted(queue.rejected_by_reason.items()):
                refused.add_metric([queue.action_ref, reason], count)
        up.add_metric([], 1)
        yield from (length, active, limit, oldest, updated, enqueued, ended, refused, up)

    @staticmethod
    def _counter_families() -> tuple[CounterMetricFamily, ...]:
        return (
            CounterMetricFamily(
                "attune_executions_enqueued", "Executions admitted through the gate.", labels=["action"]
            ),
            CounterMetricFamily(
                "attune_executions_terminal",
                "Executions that reached a terminal status after passing the gate.",
                labels=["action", "status"],
            ),
            CounterMetricFamily(
                "attune_queue_rejected", "Execution requests the gate refused.", labels=["action", "reason"]
            ),
        )

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily(
                "attune_queue_length",
                "Executions waiting in the action's FIFO queue (group: one queue per combination of a "
                'policy\'s parameter values, else "default"; past the cap, the rest as "other").',
                labels=["action", "group"],
            ),
            GaugeMetricFamily(
                "attune_queue_active",
                "Executions holding one of the queue's slots (scheduled, running, canceling).",
                labels=["action", "group"],
            ),
            GaugeMetricFamily(
                "attune_queue_max_concurrent",
                "The action's concurrency limit in force; +Inf when unlimited.",
                labels=["action"],
            ),
            GaugeMetricFamily(
                "attune_queue_oldest_age_seconds",
                "How long the head of the queue (the next to start) has waited; 0 when nothing waits.",
                labels=["action", "group"],
            ),
            GaugeMetricFamily(
                "attune_queue_last_updated",
                "Unix time of the queue's last state change (admission, grant, release, cancel).",
                labels=["action"],
            ),
        )


class _Forward(Collector):
    """Everything another registry holds, as one collector."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        return iter(self.source.collect())


def multiprocess_mode() -> bool:
    # The same test prometheus_client makes when it picks its value class.
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ


@lru_cache(maxsize=2)
def scrape_registry(*, include_queues: bool) -> CollectorRegistry:
    """What one scrape of this process returns: in multiprocess mode the sum
    over every process writing to PROMETHEUS_MULTIPROC_DIR, else this
    process's default registry; plus the queue gauges if asked.

    Only the web process asks for the gauges: they come from Redis, so every
    process would report the same values, and one source is enough.
    """
    registry = CollectorRegistry()
    if multiprocess_mode():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Forward(REGISTRY))
    if include_queues:
        registry.register(QueueCollector())
    return registry


def exposition(*, include_queues: bool = True) -> tuple[bytes, str]:
    """The text a scrape of this process gets, and its content type."""
    return generate_latest(scrape_registry(include_queues=include_queues)), CONTENT_TYPE_LATEST


def start_exporter(port: int, *, role: str) -> bool:
    """Serve this process's metrics (without the queue gauges) on ``port``
    from a daemon thread. Returns whether it listens.

    A port already taken (two workers on one host with the default port)
    is logged, not fatal: the worker still runs, its metrics are not served.
    """
    if port <= 0:
        return False
    try:
        start_http_server(port, registry=scrape_registry(include_queues=False))
    except OSError as exc:
        logger.warning(
            "%s metrics: cannot listen on port %s (%s); set a free port to export them", role, port, exc
        )
        return False
    logger.info(
        "%s metrics on :%s/metrics (%s)",
        role,
        port,
        "multiprocess" if multiprocess_mode() else "single process",
    )
    return True
