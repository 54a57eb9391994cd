"""Staff page of the worker registry: read-only, fed by Celery's worker signals."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from workers.models import Worker


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ["hostname", "status", "pid", "queues", "started", "last_heartbeat", "stopped", "running"]
    list_filter = ["status"]
    search_fields = ["hostname"]

    @admin.display(description="running executions")
    def running(self, worker: Worker) -> int:
        return int(worker.running_executions().count())

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
