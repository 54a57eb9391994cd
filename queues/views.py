"""The web process's Prometheus endpoint."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from queues import metrics as queue_metrics


def metrics(request: HttpRequest) -> HttpResponse:
    """Everything this process counts plus the live queue gauges
    (queues/metrics.py says which process exports what)."""
    body, content_type = queue_metrics.exposition(include_queues=True)
    return HttpResponse(body, content_type=content_type)
