from django.contrib import admin
from django.urls import include, path

from queues import views as queue_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("dashboard/", include("queues.dashboard.urls")),
    # Not django_prometheus.urls: this view adds the queue gauges and sums
    # processes in multiprocess mode (queues/metrics.py).
    path("metrics", queue_views.metrics, name="prometheus-django-metrics"),
]
