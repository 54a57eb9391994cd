"""Routes of /api/v1/. Paths have no trailing slash: /api/v1/executions."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from executions.api.views import ActionViewSet, AuditViewSet, ExecutionViewSet, PackViewSet, PolicyViewSet
from queues.api import ActionQueueStatsView, PurgeQueueView, QueueStatsListView

router = SimpleRouter(trailing_slash=False)
router.register("packs", PackViewSet, basename="pack")
router.register("actions", ActionViewSet, basename="action")
router.register("executions", ExecutionViewSet, basename="execution")
router.register("audit", AuditViewSet, basename="audit")
router.register("policies", PolicyViewSet, basename="policy")

urlpatterns = [
    path("actions/<str:ref>/queue-stats", ActionQueueStatsView.as_view(), name="action-queue-stats"),
    path("actions/<str:ref>/purge", PurgeQueueView.as_view(), name="action-purge"),
    path("queue-stats", QueueStatsListView.as_view(), name="queue-stats"),
    *router.urls,
]
