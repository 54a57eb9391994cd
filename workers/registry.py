"""Keeps the Worker rows current from Celery's worker signals."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from queues import metrics
from queues.reconcile import reconcile_missing
from queues.stats import start_worker_flusher, stop_worker_flusher
from workers.models import Worker, WorkerStatus

logger = logging.getLogger(__name__)
_heartbeat_stop = threading.Event()


def _hostname(sender: Any) -> str:
    return str(getattr(sender, "hostname", None) or f"pid-{os.getpid()}")


def _queues(sender: Any) -> str:
    try:
        return ",".join(sorted(q.name for q in sender.task_consumer.queues))
    except AttributeError:
        return ""


def _beat(hostname: str) -> None:
    interval = float(settings.ATTUNE_LEASE_SECONDS) / 3
    while not _heartbeat_stop.wait(interval):
        try:
            Worker.objects.heartbeat(hostname)
        except Exception:  # the database is briefly away; the next beat retries
            logger.exception("worker heartbeat failed")
        finally:
            close_old_connections()


def worker_started(sender: Any) -> None:
    """Register the worker, start its heartbeat, rebuild any queue whose
    Redis state is missing (Redis restarted while the fleet was down), and
    start its queue stats flusher (one in the fleet flushes at a time)."""
    # The worker's own metrics and its pool processes' (queues/metrics.py).
    metrics.start_exporter(settings.ATTUNE_WORKER_METRICS_PORT, role="worker")
    hostname = _hostname(sender)
    now = timezone.now()
    Worker.objects.update_or_create(
        hostname=hostname,
        defaults={
            "pid": os.getpid(),
            "queues": _queues(sender),
            "status": WorkerStatus.ONLINE,
            "started": now,
            "last_heartbeat": now,
            "stopped": None,
        },
    )
    threading.Thread(target=_beat, args=(hostname,), name="worker-heartbeat", daemon=True).start()
    try:
        for report in reconcile_missing():
            logger.info("worker start rebuilt queue %s", report)
    except Exception:  # Redis or the database not ready yet: the reaper retries
        logger.exception("reconcile at worker start failed")
    start_worker_flusher()


def worker_stopped(sender: Any) -> None:
    _heartbeat_stop.set()
    stop_worker_flusher()
    Worker.objects.filter(hostname=_hostname(sender)).update(
        status=WorkerStatus.OFFLINE, stopped=timezone.now()
    )
