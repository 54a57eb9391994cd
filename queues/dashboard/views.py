"""The live queue dashboard: one server-rendered page and the JSON endpoints
its script polls. Each view parses, checks the user is staff, and calls one
function of queues/dashboard/services.py."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from executions.exceptions import ActionNotFound, AlreadyTerminal, ExecutionNotFound
from queues.dashboard import services

# How often the page asks for fresh figures.
POLL_INTERVAL_MS = 2000

JsonView = Callable[..., HttpResponse]


def _error(status: int, message: str, code: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def staff_json(view: JsonView) -> JsonView:
    """Like staff_member_required, but a script gets a JSON 403 rather than
    a redirect to the login page it cannot follow."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = request.user
        if not user.is_authenticated:
            return _error(403, "Log in as a staff user to see the queues.", "not_authenticated")
        if not (user.is_active and user.is_staff):
            return _error(403, "Only staff users may see the queues.", "permission_denied")
        return view(request, *args, **kwargs)

    return wrapped


@staff_member_required
@require_GET
def page(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "queues/dashboard.html",
        {"overview": services.overview(), "poll_interval_ms": POLL_INTERVAL_MS},
    )


@staff_json
@require_GET
def queues(request: HttpRequest) -> JsonResponse:
    return JsonResponse(services.overview())


@staff_json
@require_GET
def queue_detail(request: HttpRequest, action_ref: str) -> JsonResponse:
    try:
        return JsonResponse(services.queue_detail(action_ref))
    except ActionNotFound as exc:
        return _error(404, str(exc), "action_not_found")


@staff_json
@require_POST
def cancel(request: HttpRequest, execution_id: str) -> JsonResponse:
    try:
        return JsonResponse(services.cancel(execution_id, request.user))
    except ExecutionNotFound as exc:
        return _error(404, str(exc), "execution_not_found")
    except AlreadyTerminal as exc:
        return _error(409, str(exc), "already_terminal")
