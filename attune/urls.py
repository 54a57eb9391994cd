from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import IsAuthenticated

from queues import views as queue_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("executions.api.urls")),
    # Like every endpoint, the schema and its page need a login (session or token).
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[IsAuthenticated]), name="schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema", permission_classes=[IsAuthenticated]),
        name="api-docs",
    ),
    path("dashboard/", include("queues.dashboard.urls")),
    # Not django_prometheus.urls: this view adds the queue gauges and sums
    # processes in multiprocess mode (queues/metrics.py).
    path("metrics", queue_views.metrics, name="prometheus-django-metrics"),
]
