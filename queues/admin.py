"""Staff page of the persisted queue statistics: read-only, busiest first."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from attune.admin_mixins import ReadOnlyAdminMixin
from queues.models import STAT_FIELDS, QueueStats


class BusyFilter(admin.SimpleListFilter):
    title = "activity"
    parameter_name = "busy"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Waiting or running"), ("no", "Idle")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[QueueStats]) -> QuerySet[QueueStats]:
        if self.value() == "yes":
            return queryset.busy()  # type: ignore[attr-defined]
        if self.value() == "no":
            return queryset.idle()  # type: ignore[attr-defined]
        return queryset


@admin.register(QueueStats)
class QueueStatsAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Written only by the flusher and rebuild_queue_stats."""

    list_display = ["action_ref", "group", *STAT_FIELDS]
    list_filter = [BusyFilter]
    list_select_related = ["action"]
    search_fields = ["action__ref", "group"]
    ordering = ["-queue_length", "-active_count", "action__ref", "group"]

    @admin.display(description="action", ordering="action__ref")
    def action_ref(self, stats: QueueStats) -> str:
        return stats.action.ref
