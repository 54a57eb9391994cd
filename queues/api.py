"""Queue statistics and purging over HTTP, under /api/v1/.

The statistics served are the persisted queue_stats rows, at most one
flush interval behind the live counters; no request touches the gate.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
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
    action_id = serializers.IntegerField(read_only=True)
    action_ref = serializers.CharField(source="action.ref", read_only=True)

    class Meta:
        model = QueueStats
        fields = ["action_id", "action_ref", *STAT_FIELDS]
        read_only_fields = fields


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
        "counts every terminal status (completed, failed, timeout, cancelled, abandoned).",
        responses={
            200: inline_serializer("QueueStatsResponse", {"data": QueueStatsSerializer()}),
            **errors(401, 404),
        },
    )
    def get(self, request: Request, ref: str) -> Response:
        return Response({"data": QueueStatsSerializer(services.queue_stats_for(ref)).data})


class QueueStatsListView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Queue statistics of every action",
        tags=["queues"],
        description="Deepest queue first.",
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
