"""Project-wide middleware."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from executions import audit


class AuditRequestMiddleware:
    """Makes the request being served known to the audit trail, so a change
    made while serving it is recorded with its user and where it came from."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with audit.serving(request):
            return self.get_response(request)
