"""The worker registry: one row per Celery worker that has ever started."""

from __future__ import annotations

from django.db import models


class WorkerStatus(models.TextChoices):
    ONLINE = "online"
    OFFLINE = "offline"


class Worker(models.Model):
    hostname = models.CharField(max_length=255, unique=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    queues = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=20, choices=WorkerStatus.choices, default=WorkerStatus.ONLINE)
    started = models.DateTimeField()
    last_heartbeat = models.DateTimeField(db_index=True)
    stopped = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["hostname"]

    def __str__(self) -> str:
        return f"{self.hostname} ({self.status})"

    def running_executions(self) -> models.QuerySet:  # type: ignore[type-arg]
        from executions.models import ACTIVE_STATUSES, Execution

        return Execution.objects.filter(worker=self.hostname, status__in=ACTIVE_STATUSES)
