"""Query-string filters of the list endpoints."""

from __future__ import annotations

import django_filters

from executions.models import Action, AuditEntry, AuditKind, Execution, ExecutionStatus


class ActionFilter(django_filters.FilterSet):
    pack = django_filters.CharFilter(field_name="pack__ref", help_text="Only the actions of this pack (ref).")
    enabled = django_filters.BooleanFilter()
    runner = django_filters.CharFilter()

    class Meta:
        model = Action
        fields = ["pack", "enabled", "runner"]


class ExecutionFilter(django_filters.FilterSet):
    action = django_filters.CharFilter(field_name="action_ref", help_text="Only this action's (ref).")
    status = django_filters.MultipleChoiceFilter(
        choices=ExecutionStatus.choices, help_text="One status; repeat the parameter for several."
    )
    created_after = django_filters.IsoDateTimeFilter(
        field_name="created", lookup_expr="gte", help_text="Created at or after (ISO 8601)."
    )
    created_before = django_filters.IsoDateTimeFilter(
        field_name="created", lookup_expr="lt", help_text="Created before (ISO 8601)."
    )

    class Meta:
        model = Execution
        fields = ["action", "status", "created_after", "created_before"]


class AuditFilter(django_filters.FilterSet):
    kind = django_filters.MultipleChoiceFilter(
        choices=AuditKind.choices, help_text="One kind of change; repeat the parameter for several."
    )
    actor = django_filters.CharFilter(
        field_name="actor_name", help_text="Only this user's changes (username)."
    )
    target = django_filters.CharFilter(help_text="Only changes of this ref or id.")
    since = django_filters.IsoDateTimeFilter(
        field_name="at", lookup_expr="gte", help_text="At or after (ISO 8601)."
    )

    class Meta:
        model = AuditEntry
        fields = ["kind", "actor", "target", "since"]
