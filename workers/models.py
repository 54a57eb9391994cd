"""The worker registry: one row per Celery worker that has ever started."""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.utils import timezone


class WorkerStatus(models.TextChoices):
    ONLINE = "online"
    OFFLINE = "offline"


class WorkerQuerySet(models.QuerySet["Worker"]):
    def heartbeat(self, hostname: str) -> bool:
        """Record that the worker is alive; returns whether its row exists.

        A worker the reaper marked offline while it was only slow (a long
        database outage) comes back online here; one that shut down stays
        offline.
        """
        rows = self.filter(hostname=hostname, stopped__isnull=True)
        return rows.update(last_heartbeat=timezone.now(), status=WorkerStatus.ONLINE) == 1

    def mark_silent_offline(self, *, silent_for: timedelta) -> list[str]:
        """Mark offline every online worker whose last heartbeat is older
        than ``silent_for`` (it was killed or lost the database); returns
        their hostnames."""
        silent = self.filter(status=WorkerStatus.ONLINE, last_heartbeat__lt=timezone.now() - silent_for)
        # Row by row, with the condition checked again: one that beat
        # meanwhile stays online.
        return [
            hostname
            for hostname in silent.values_list("hostname", flat=True)
            if silent.filter(hostname=hostname).update(status=WorkerStatus.OFFLINE) == 1
        ]


class Worker(models.Model):
    hostname = models.CharField(max_length=255, unique=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    queues = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=20, choices=WorkerStatus.choices, default=WorkerStatus.ONLINE)
    started = models.DateTimeField()
    last_heartbeat = models.DateTimeField(db_index=True)
    stopped = models.DateTimeField(null=True, blank=True)

    objects = WorkerQuerySet.as_manager()

    class Meta:
        ordering = ["hostname"]

    def __str__(self) -> str:
        return f"{self.hostname} ({self.status})"

    def running_executions(self) -> models.QuerySet:  # type: ignore[type-arg]
        from executions.models import ACTIVE_STATUSES, Execution

        return Execution.objects.filter(worker=self.hostname, status__in=ACTIVE_STATUSES)
