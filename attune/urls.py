from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import IsAuthenticated

from attune import api_errors
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
    # Last of the API's routes: any other path under /api/ answers the API's JSON 404.
    re_path(r"^api/(?P<path>.*)$", api_errors.api_not_found),
    path("dashboard/", include("queues.dashboard.urls")),
    # Not django_prometheus.urls: this view adds the queue gauges and sums
    # processes in multiprocess mode (queues/metrics.py).
    path("metrics", queue_views.metrics, name="prometheus-django-metrics"),
]

handler400 = "attune.api_errors.bad_request"
handler500 = "attune.api_errors.server_error"
