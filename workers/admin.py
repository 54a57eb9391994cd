"""Staff page of the worker registry: read-only, fed by Celery's worker signals."""

from __future__ import annotations

from django.contrib import admin

from attune.admin_mixins import ReadOnlyAdminMixin
from workers.models import Worker


@admin.register(Worker)
class WorkerAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["hostname", "status", "pid", "queues", "started", "last_heartbeat", "stopped", "running"]
    list_filter = ["status"]
    search_fields = ["hostname"]

    @admin.display(description="running executions")
    def running(self, worker: Worker) -> int:
        return int(worker.running_executions().count())
