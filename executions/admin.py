"""Staff pages for packs, actions and executions (/admin/)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from attune.admin_mixins import ReadOnlyAdminMixin
from executions.models import Action, AuditEntry, Execution, Grant, Pack, Policy
from queues.policy import resolve_limit
from queues.services import cancel_executions

# Beyond this, per-execution messages would bury the page; the rest are summed up.
MAX_CANCEL_MESSAGES = 20


@admin.register(Pack)
class PackAdmin(admin.ModelAdmin):
    list_display = ["ref", "label", "concurrency_limit", "action_count"]
    search_fields = ["ref", "label"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Pack]:
        return super().get_queryset(request).annotate(action_total=Count("actions"))

    def get_readonly_fields(self, request: HttpRequest, obj: Pack | None = None) -> list[str]:
        # Actions' refs are made of the pack's.
        return ["ref"] if obj is not None else []

    @admin.display(description="actions", ordering="action_total")
    def action_count(self, pack: Pack) -> int:
        return int(getattr(pack, "action_total", 0))


@admin.register(Action)
class ActionAdmin(admin.ModelAdmin):
    list_display = [
        "ref",
        "runner",
        "enabled",
        "concurrency_limit",
        "effective_limit",
        "max_queue_length",
        "queue_timeout_seconds",
        "timeout_seconds",
    ]
    list_filter = ["enabled", "runner", "pack"]
    list_select_related = ["pack"]
    search_fields = ["ref", "label"]
    fieldsets = [
        (None, {"fields": ["pack", "name", "ref", "label", "description", "enabled"]}),
        (
            "Definition",
            {"fields": ["runner", "entrypoint", "parameters_schema", "timeout_seconds", "celery_queue"]},
        ),
        (
            "Concurrency and queue",
            {
                "fields": [
                    "concurrency_limit",
                    "effective_limit",
                    "max_queue_length",
                    "queue_timeout_seconds",
                ],
                "description": "An empty limit falls back to the pack's, then to the global default. "
                "A change applies as soon as it is saved: raising it starts waiting executions.",
            },
        ),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Action | None = None) -> list[str]:
        # The ref names the queue and every execution of the action.
        identity = ["pack", "name"] if obj is not None else []
        # Which code runs is for superusers (executions.api.permissions.SuperuserDefinesCode).
        code = [] if request.user.is_superuser else ["runner", "entrypoint"]
        return [*identity, *code, "ref", "effective_limit"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser) and super().has_add_permission(request)

    @admin.display(description="limit in force")
    def effective_limit(self, action: Action) -> str:
        if action.pk is None:
            return "-"
        limit = resolve_limit(action)
        return "unlimited" if limit is None else str(limit)


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only: executions change only through the services, so that the
    gate and the database stay in step. Cancelling is the one action."""

    list_display = [
        "id",
        "action_ref",
        "status",
        "created",
        "started_at",
        "completed_at",
        "worker",
        "priority",
        "requested_by",
        "cancelled_by",
        "queue_seq",
        "grant_seq",
    ]
    list_select_related = ["requested_by", "cancelled_by"]
    list_filter = ["status", ("action", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["id"]
    ordering = ["-created"]
    list_per_page = 100
    # Counting a large table on every page view is slow; the pager does without.
    show_full_result_count = False
    actions = ["cancel_selected"]

    def get_readonly_fields(self, request: HttpRequest, obj: Execution | None = None) -> list[str]:
        return [field.name for field in Execution._meta.fields]

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("executions.change_execution"))

    @admin.action(description="Cancel selected executions", permissions=["cancel"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Execution]) -> None:
        outcomes = cancel_executions(list(queryset.values_list("pk", flat=True)), by=request.user)
        for outcome in outcomes[:MAX_CANCEL_MESSAGES]:
            self.message_user(request, outcome.message, messages.SUCCESS if outcome.ok else messages.WARNING)
        rest = outcomes[MAX_CANCEL_MESSAGES:]
        if rest:
            done = sum(1 for outcome in rest if outcome.ok)
            self.message_user(
                request,
                f"And {len(rest)} more: {done} cancelled or being cancelled, {len(rest) - done} refused.",
                messages.INFO,
            )


@admin.register(Grant)
class GrantAdmin(admin.ModelAdmin):
    """Who may read, request or cancel the executions of an action or pack.
    A grant is given or taken back, never edited, so the audit trail shows
    each as one entry."""

    list_display = ["permission", "pack", "action", "user", "group", "created"]
    list_filter = ["permission", "pack"]
    list_select_related = ["pack", "action", "user", "group"]
    search_fields = ["action__ref", "pack__ref", "user__username", "group__name"]
    autocomplete_fields = ["action", "pack", "user", "group"]

    def has_change_permission(self, request: HttpRequest, obj: Grant | None = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["at", "actor_name", "source", "kind", "target", "before", "after"]
    list_filter = ["kind", "source"]
    search_fields = ["target", "actor_name"]
    date_hierarchy = "at"
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: AuditEntry | None = None) -> list[str]:
        return [field.name for field in AuditEntry._meta.fields]


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    """A change applies as soon as it is saved: the queues the policy covers
    are refilled with it (raising a limit starts waiting executions)."""

    list_display = [
        "name",
        "scope",
        "pack",
        "action",
        "enabled",
        "priority",
        "concurrency_limit",
        "method",
        "parameters",
        "rate_limit_executions",
        "rate_limit_window_seconds",
        "max_queue_length",
        "queue_timeout_seconds",
    ]
    list_filter = ["enabled", "scope", "method"]
    list_select_related = ["pack", "action"]
    search_fields = ["name", "action__ref", "pack__ref"]
    autocomplete_fields = ["pack", "action"]
    fieldsets = [
        (None, {"fields": ["name", "description", "enabled", "priority"]}),
        ("Applies to", {"fields": ["scope", "pack", "action"]}),
        (
            "Concurrency",
            {
                "fields": ["concurrency_limit", "method", "parameters"],
                "description": "parameters: a JSON list of parameter names or dot-paths; each "
                "combination of their values gets its own queue and limit.",
            },
        ),
        (
            "Rate",
            {
                "fields": ["rate_limit_executions", "rate_limit_window_seconds"],
                "description": "At most this many starts of each action covered in any window of this "
                "many seconds; the rest wait at their place in the queue.",
            },
        ),
        ("Queue", {"fields": ["max_queue_length", "queue_timeout_seconds"]}),
    ]
