"""Query-string filters of the list endpoints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField

from executions.models import Action, AuditEntry, AuditKind, Execution, ExecutionStatus


class UTCDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, turned to UTC before it reaches a query:
    PostgreSQL refuses UTC offsets beyond 15:59 (Python takes up to 23:59).
    Present but empty (``?since=``) is refused, not taken as no filter."""

    def to_python(self, value: Any) -> datetime | None:
        if value == "":
            raise ValidationError("Enter a valid date/time.", code="invalid")
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise ValidationError(f"{value} is out of range once in UTC.", code="invalid") from None


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCDateTimeField


class StrictBooleanField(forms.Field):
    """``true`` or ``false`` (as the schema says), else a 400; django-filter's
    own boolean ignores any other value and filters nothing."""

    def to_python(self, value: Any) -> bool | None:
        if value is None:
            return None
        if value in ("true", "false"):
            return value == "true"
        raise ValidationError(f"Must be true or false, got {value!r}.", code="invalid")


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


class ActionFilter(django_filters.FilterSet):
    pack = django_filters.CharFilter(field_name="pack__ref", help_text="Only the actions of this pack (ref).")
    enabled = StrictBooleanFilter()
    runner = django_filters.CharFilter()

    class Meta:
        model = Action
        fields = ["pack", "enabled", "runner"]


class ExecutionFilter(django_filters.FilterSet):
    action = django_filters.CharFilter(field_name="action_ref", help_text="Only this action's (ref).")
    status = django_filters.MultipleChoiceFilter(
        choices=ExecutionStatus.choices, help_text="One status; repeat the parameter for several."
    )
    created_after = UTCDateTimeFilter(
        field_name="created", lookup_expr="gte", help_text="Created at or after (ISO 8601)."
    )
    created_before = UTCDateTimeFilter(
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
    since = UTCDateTimeFilter(field_name="at", lookup_expr="gte", help_text="At or after (ISO 8601).")

    class Meta:
        model = AuditEntry
        fields = ["kind", "actor", "target", "since"]
