"""Queue statistics and purging over HTTP, under /api/v1/.

The statistics served are the persisted queue_stats rows, at most one
flush interval behind the live counters; no request touches the gate.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from executions.api.permissions import IsStaff
from executions.api.views import errors
from queues import services
from queues.models import STAT_FIELDS, QueueStats


class QueueStatsSerializer(serializers.ModelSerializer):
    """One queue: an action and one of its groups."""

    action_id = serializers.IntegerField(read_only=True)
    action_ref = serializers.CharField(source="action.ref", read_only=True)
    group = serializers.CharField(
        read_only=True,
        help_text="`default`, or the combination of parameter values a policy with `parameters` "
        "gives its own queue.",
    )

    class Meta:
        model = QueueStats
        fields = ["action_id", "action_ref", "group", *STAT_FIELDS]
        read_only_fields = fields


class ActionQueueStatsSerializer(serializers.ModelSerializer):
    """An action's queues added up, and each of them under ``groups``."""

    action_id = serializers.IntegerField(read_only=True)
    action_ref = serializers.CharField(source="action.ref", read_only=True)
    groups = serializers.SerializerMethodField(
        help_text="A row per queue of the action, `default` first: one unless a policy with "
        "`parameters` splits it."
    )

    class Meta:
        model = QueueStats
        fields = ["action_id", "action_ref", *STAT_FIELDS, "groups"]
        read_only_fields = fields

    @extend_schema_field(QueueStatsSerializer(many=True))
    def get_groups(self, total: QueueStats) -> list[dict[str, Any]]:
        return QueueStatsSerializer(self.context["groups"], many=True).data


class PurgeReportSerializer(serializers.Serializer):
    action_ref = serializers.CharField()
    cancelled = serializers.ListField(child=serializers.UUIDField(), help_text="Executions cancelled.")
    skipped = serializers.ListField(
        child=serializers.UUIDField(), help_text="Executions that left the queue on their own meanwhile."
    )


def _flag(request: Request, name: str) -> bool:
    """A boolean query parameter: ``true`` or ``false`` as the schema says
    (absent is false); anything else, empty included, is a 400."""
    raw = request.query_params.get(name)
    if raw is None:
        return False
    if raw in ("true", "false"):
        return raw == "true"
    raise ValidationError({name: f"must be true or false, got {raw!r}"})


class ActionQueueStatsView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Queue statistics of one action",
        tags=["queues"],
        description="`total_completed` counts executions that ended `completed`; `total_terminal` "
        "counts every terminal status (completed, failed, timeout, cancelled, abandoned). The "
        "figures add up every group of the action; `groups` has each one.",
        responses={
            200: inline_serializer("QueueStatsResponse", {"data": ActionQueueStatsSerializer()}),
            **errors(401, 404),
        },
    )
    def get(self, request: Request, ref: str) -> Response:
        stats = services.queue_stats_for(ref)
        return Response(
            {"data": ActionQueueStatsSerializer(stats.total, context={"groups": stats.groups}).data}
        )


class QueueStatsListView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Queue statistics of every queue",
        tags=["queues"],
        description="A row per queue, deepest first: one per action, or one per group of an action "
        "that a policy with `parameters` splits.",
        parameters=[
            OpenApiParameter(
                "active", bool, description="true: only queues with executions waiting or running."
            )
        ],
        responses={
            200: inline_serializer("QueueStatsListResponse", {"data": QueueStatsSerializer(many=True)}),
            **errors(400, 401),
        },
    )
    def get(self, request: Request) -> Response:
        rows = services.list_queue_stats(active_only=_flag(request, "active"))
        return Response({"data": QueueStatsSerializer(rows, many=True).data})


class PurgeQueueView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(
        summary="Purge an action's queue (staff)",
        tags=["queues"],
        description="Cancels every execution waiting in the queue, head first. Running ones are left alone.",
        request=None,
        responses={
            200: inline_serializer("PurgeResponse", {"data": PurgeReportSerializer()}),
            **errors(401, 403, 404),
        },
    )
    def post(self, request: Request, ref: str) -> Response:
        report = services.purge_queue(ref, by=request.user)
        data: dict[str, Any] = {
            "action_ref": report.action_ref,
            "cancelled": report.cancelled,
            "skipped": report.skipped,
        }
        return Response({"data": PurgeReportSerializer(data).data})
