"""Request parsing and response shapes of the packs, actions and executions API.

Serializers only parse and present; saving goes through executions.catalog,
requesting and cancelling through executions.services.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from executions import catalog, services
from executions.api.fields import JSONObjectField, StrictCharField, StrictIntegerField, StrictModelSerializer
from executions.exceptions import PackNotFound
from executions.models import (
    DEFAULT_PRIORITY,
    MAX_PRIORITY,
    PACK_REF_VALIDATOR,
    POLICY_NAME_VALIDATOR,
    Action,
    AuditEntry,
    Execution,
    Pack,
    Policy,
)
from executions.storable import NUL
from queues.policy import resolve_limit
from queues.services import WaitingInfo, waiting_info


class ErrorSerializer(serializers.Serializer):
    """Every error response: a message naming the problem, and for
    validation errors the field-by-field detail."""

    error = serializers.CharField()
    field = serializers.CharField(required=False, help_text="The offending field, when one is to blame.")
    detail = serializers.JSONField(required=False, help_text="Field-by-field validation errors.")


class PackSerializer(StrictModelSerializer):
    """A pack's ref cannot change once created; catalog.update_pack refuses it."""

    class Meta:
        model = Pack
        fields = ["ref", "label", "description", "concurrency_limit"]
        # Without DRF's UniqueValidator: a taken ref is a conflict (409), which
        # catalog.create_pack reports, not a malformed field (400).
        extra_kwargs = {"ref": {"validators": [PACK_REF_VALIDATOR]}}

    def create(self, validated_data: dict[str, Any]) -> Pack:
        return catalog.create_pack(**validated_data)

    def update(self, instance: Pack, validated_data: dict[str, Any]) -> Pack:
        return catalog.update_pack(instance, **validated_data)


class PackRefField(serializers.SlugRelatedField):
    """A pack named by its ref. An unknown one is PackNotFound (404), as an
    unknown action is when requesting an execution."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(slug_field="ref", queryset=Pack.objects.all(), **kwargs)

    def to_internal_value(self, data: Any) -> Pack:
        if not isinstance(data, str):
            self.fail("invalid")
        if NUL in data:
            # The same words as DRF's text fields; the driver could not send it anyway.
            raise serializers.ValidationError("Null characters are not allowed.")
        pack = Pack.objects.filter(ref=data).first()
        if pack is None:
            raise PackNotFound(f"Pack '{data}' not found")
        return pack


class ActionSerializer(StrictModelSerializer):
    """An action's pack and name (its ref) cannot change once created;
    catalog.update_action refuses it."""

    pack = PackRefField(help_text="The pack's ref.")
    parameters_schema = JSONObjectField(
        required=False, help_text="A JSON Schema (draft 2020-12) the parameters of each request must match."
    )
    effective_concurrency_limit = serializers.SerializerMethodField(
        help_text="The limit in force: the action's own, else its pack's, else the global default; "
        "null means unlimited."
    )

    class Meta:
        model = Action
        fields = [
            "ref",
            "pack",
            "name",
            "label",
            "description",
            "runner",
            "entrypoint",
            "parameters_schema",
            "timeout_seconds",
            "enabled",
            "celery_queue",
            "concurrency_limit",
            "effective_concurrency_limit",
            "max_queue_length",
            "queue_timeout_seconds",
        ]
        read_only_fields = ["ref"]
        # Without DRF's UniqueTogetherValidator: a name taken in the pack is a
        # conflict (409), which catalog.create_action reports.
        validators: list[Any] = []

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_effective_concurrency_limit(self, action: Action) -> int | None:
        return resolve_limit(action)

    def create(self, validated_data: dict[str, Any]) -> Action:
        return catalog.create_action(**validated_data)

    def update(self, instance: Action, validated_data: dict[str, Any]) -> Action:
        return catalog.update_action(instance, **validated_data)


class ExecutionRequestSerializer(serializers.Serializer):
    action = StrictCharField(max_length=201, help_text="The action's ref, e.g. core.http_request.")
    parameters = JSONObjectField(
        required=False,
        allow_null=True,
        help_text="A JSON object checked against the action's parameters_schema; empty if omitted.",
    )
    priority = StrictIntegerField(
        required=False,
        default=DEFAULT_PRIORITY,
        min_value=0,
        max_value=MAX_PRIORITY,
        help_text="0-9, default 5: within the action's queue a higher priority starts first, "
        "equal priorities in request order. Never past the limit.",
    )


class ExecutionSerializer(serializers.ModelSerializer):
    action = serializers.CharField(source="action_ref", read_only=True)
    requested_by = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="Who requested it; null when a management command or the system did.",
    )
    cancelled_by = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="Who cancelled it; null when not cancelled by a user.",
    )

    class Meta:
        model = Execution
        fields = [
            "id",
            "action",
            "status",
            "parameters",
            "result",
            "error",
            "created",
            "enqueued_at",
            "scheduled_at",
            "started_at",
            "completed_at",
            "updated",
            "worker",
            "queue_seq",
            "grant_seq",
            "priority",
            "queue_group",
            "requested_by",
            "cancelled_by",
        ]
        read_only_fields = fields


class ExecutionDetailSerializer(ExecutionSerializer):
    """One execution, and if it waits, its place in line and expected wait."""

    queue_position = serializers.SerializerMethodField(
        help_text="Place in the action's queue while waiting, 1 = next; null otherwise."
    )
    estimated_wait_seconds = serializers.SerializerMethodField(
        help_text="Expected seconds until it starts, from the action's recent throughput; "
        "null when not waiting or when there is no recent throughput to go by."
    )

    class Meta(ExecutionSerializer.Meta):
        fields = [*ExecutionSerializer.Meta.fields, "queue_position", "estimated_wait_seconds"]
        read_only_fields = fields

    def _waiting(self, execution: Execution) -> WaitingInfo:
        cache: dict[Any, WaitingInfo] = self.context.setdefault("waiting", {})
        if execution.pk not in cache:
            cache[execution.pk] = waiting_info(execution)
        return cache[execution.pk]

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_queue_position(self, execution: Execution) -> int | None:
        return self._waiting(execution).queue_position

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_estimated_wait_seconds(self, execution: Execution) -> float | None:
        return self._waiting(execution).estimated_wait_seconds


class AuditEntrySerializer(serializers.ModelSerializer):
    actor = serializers.CharField(
        source="actor_name", read_only=True, help_text="Username; empty for a management command."
    )
    source = serializers.CharField(read_only=True, help_text="api, admin, dashboard or command.")
    before = serializers.JSONField(read_only=True, help_text="The fields that changed, as they were.")
    after = serializers.JSONField(read_only=True, help_text="The same fields, as they became.")

    class Meta:
        model = AuditEntry
        fields = ["id", "at", "actor", "source", "kind", "target", "before", "after"]
        read_only_fields = fields


class ActionRefField(serializers.SlugRelatedField):
    """An action named by its ref; an unknown one is ActionNotFound (404)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(slug_field="ref", queryset=Action.objects.all(), **kwargs)

    def to_internal_value(self, data: Any) -> Action:
        if not isinstance(data, str):
            self.fail("invalid")
        if NUL in data:
            raise serializers.ValidationError("Null characters are not allowed.")
        return services.get_action(data)


class PolicySerializer(StrictModelSerializer):
    """A policy's pack and action are named by ref. Saving goes through
    executions.catalog, which runs the model's validation."""

    pack = PackRefField(required=False, allow_null=True)
    action = ActionRefField(required=False, allow_null=True)
    parameters = serializers.ListField(
        child=StrictCharField(max_length=200),
        required=False,
        max_length=5,
        help_text="Parameter names or dot-paths (e.g. host, target.host): each combination of their "
        "values is a queue of its own with its own limit and FIFO order. A value missing from a "
        "request is a value of its own.",
    )

    class Meta:
        model = Policy
        fields = [
            "name",
            "description",
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
            "created",
            "updated",
        ]
        read_only_fields = ["created", "updated"]
        # Without DRF's UniqueValidator: a taken name is a conflict (409),
        # which catalog.create_policy reports.
        extra_kwargs = {"name": {"validators": [POLICY_NAME_VALIDATOR]}}

    def create(self, validated_data: dict[str, Any]) -> Policy:
        return catalog.create_policy(**validated_data)

    def update(self, instance: Policy, validated_data: dict[str, Any]) -> Policy:
        return catalog.update_policy(instance, **validated_data)


class EffectivePolicySerializer(serializers.Serializer):
    limit = serializers.IntegerField(allow_null=True, help_text="null: unlimited.")
    limit_source = serializers.CharField(
        help_text="Where the limit comes from: a policy, the action's or pack's own field, "
        "ATTUNE_DEFAULT_CONCURRENCY; empty when unlimited."
    )
    method = serializers.CharField()
    policy_name = serializers.CharField(allow_null=True)
    parameters = serializers.ListField(child=serializers.CharField())
    max_queue_length = serializers.IntegerField()
    queue_timeout_seconds = serializers.IntegerField()
    rate_limits = serializers.ListField(
        child=inline_serializer(
            "RateLimit",
            {"executions": serializers.IntegerField(), "window_seconds": serializers.FloatField()},
        ),
        help_text="Every rate limit in force: at most `executions` starts in any `window_seconds`.",
    )


class ActionPoliciesSerializer(serializers.Serializer):
    effective = EffectivePolicySerializer(help_text="What applies now, setting by setting.")
    policies = PolicySerializer(
        many=True, help_text="The enabled policies covering the action, by precedence."
    )
