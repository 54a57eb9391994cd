"""One error shape for the whole API: {"error": "...", "detail": ...}.

Domain errors from the services map to their HTTP status here, so views
only call a service and let its errors rise.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, DataError, IntegrityError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import csrf, defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import serializers, status
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated, ParseError, Throttled
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from attune.parsers import max_body_bytes, too_large
from attune.throttling import AnonThrottle
from executions.exceptions import (
    ActionDisabled,
    ActionNotFound,
    AlreadyExists,
    AlreadyTerminal,
    AttuneError,
    ExecutionNotFound,
    IllegalTransition,
    ImmutableField,
    InvalidParameters,
    PackNotFound,
    PermissionDenied,
    QueueFull,
)
from queues.exceptions import QueueStatsNotFound
from queues.redis_client import UNAVAILABLE_ERRORS

logger = logging.getLogger(__name__)
UNAVAILABLE_RETRY_AFTER_SECONDS = 5

DOMAIN_STATUS: list[tuple[type[AttuneError], int]] = [
    (ActionNotFound, status.HTTP_404_NOT_FOUND),
    (ExecutionNotFound, status.HTTP_404_NOT_FOUND),
    (PackNotFound, status.HTTP_404_NOT_FOUND),
    (QueueStatsNotFound, status.HTTP_404_NOT_FOUND),
    (ActionDisabled, status.HTTP_409_CONFLICT),
    (AlreadyExists, status.HTTP_409_CONFLICT),
    (AlreadyTerminal, status.HTTP_409_CONFLICT),
    (IllegalTransition, status.HTTP_409_CONFLICT),
    (ImmutableField, status.HTTP_409_CONFLICT),
    (InvalidParameters, status.HTTP_400_BAD_REQUEST),
    (PermissionDenied, status.HTTP_403_FORBIDDEN),
    (QueueFull, status.HTTP_429_TOO_MANY_REQUESTS),
]


def _domain_response(exc: Exception) -> Response | None:
    if isinstance(exc, AttuneError):
        code = next(
            (code for cls, code in DOMAIN_STATUS if isinstance(exc, cls)), status.HTTP_400_BAD_REQUEST
        )
        body: dict[str, Any] = {"error": str(exc)}
        headers: dict[str, str] = {}
        if isinstance(exc, InvalidParameters | ImmutableField) and exc.field:
            body["field"] = exc.field
        if isinstance(exc, QueueFull):
            headers["Retry-After"] = str(exc.retry_after_seconds)
        return Response(body, status=code, headers=headers)
    if isinstance(exc, DataError):
        # The database refused a value (out of range, unstorable): the
        # request's fault, and retrying it would fail the same way. Inputs
        # are checked before they get here; this is the net under them.
        logger.warning("the database refused a value of a request: %s", exc)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "a value is out of range"
        return Response(
            {"error": f"The database cannot store a value of this request: {reason}"},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, IntegrityError):
        # A uniqueness or reference check lost a race with another request.
        logger.warning("integrity error serving a request: %s", exc)
        return Response(
            {"error": "The request conflicts with a change made meanwhile; read the current state and retry"},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, (*UNAVAILABLE_ERRORS, DatabaseError)):
        # An outage of a backing store is not the client's fault, nor a bug:
        # say so, and when to come back.
        logger.exception("backing store unavailable")
        return Response(
            {"error": "Service temporarily unavailable: a backing store (Redis or the database) failed"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)},
        )
    return None


def _summary(data: Any) -> str:
    """The first problem in a DRF validation error, with the field it names."""
    path: list[str] = []
    while isinstance(data, dict | list) and data:
        if isinstance(data, dict):
            key, data = next(iter(data.items()))
            if key != "non_field_errors":
                path.append(str(key))
        else:
            # A list of one error per item (a batch) names the first item in error.
            index = next((i for i, item in enumerate(data) if item not in ({}, [])), 0)
            if isinstance(data[index], dict | list) and len(data) > 1:
                path.append(f"[{index}]")
            data = data[index]
    message = str(data) if data not in ({}, []) else "Invalid request"
    name = ".".join(path).replace(".[", "[")
    return f"{name}: {message}" if name else message


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    domain = _domain_response(exc)
    if domain is not None:
        set_rollback()
        return domain
    if isinstance(exc, NotAuthenticated | AuthenticationFailed):
        # DRF throttles only after its permission checks pass, which a
        # request without valid credentials never does: count those here,
        # per IP, so guessing tokens is throttled too.
        throttle = AnonThrottle()
        if "request" in context and not throttle.allow_request(context["request"], context.get("view")):
            exc = Throttled(wait=throttle.wait())
    if isinstance(exc, RecursionError):
        # Only client input nests deep enough for this: JSON of absurd depth.
        exc = ParseError("JSON parse error - the document is nested too deeply")
    if isinstance(exc, RequestDataTooBig):
        # Something read request.body (which checks the size) before the parser could.
        limit = max_body_bytes()
        exc = too_large(None, limit) if limit is not None else ParseError("Request body too large")
    if isinstance(exc, DjangoValidationError):
        # A model's full_clean() in a service: the same 400 as a serializer's.
        exc = serializers.ValidationError(serializers.as_serializer_error(exc))
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, dict) and "detail" in data and len(data) == 1:
        response.data = {"error": str(data["detail"])}
    elif isinstance(data, dict | list):
        response.data = {"error": _summary(data), "detail": data}
    return response


# Exempt like every DRF view: a POST with a session cookie and no CSRF token
# to a path that names nothing is a 404, not the CSRF page.
@csrf_exempt
def api_not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Every path under /api/ that names no endpoint: the API's 404, not Django's HTML page."""
    return JsonResponse({"error": f"No API endpoint at {request.path}"}, status=status.HTTP_404_NOT_FOUND)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """A request Django refused outside DRF's handling (e.g. a body over
    DATA_UPLOAD_MAX_MEMORY_SIZE read by a middleware): JSON under /api/,
    Django's page elsewhere."""
    if not request.path.startswith("/api/"):
        return defaults.bad_request(request, exception)
    limit = max_body_bytes()
    if isinstance(exception, RequestDataTooBig) and limit is not None:
        body = {"error": str(too_large(None, limit).detail)}
        return JsonResponse(body, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    return JsonResponse({"error": "Bad request"}, status=status.HTTP_400_BAD_REQUEST)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A write without its CSRF token: JSON under /api/, Django's page elsewhere."""
    if not request.path.startswith("/api/"):
        return csrf.csrf_failure(request, reason)
    return JsonResponse({"error": f"CSRF check failed: {reason}"}, status=status.HTTP_403_FORBIDDEN)


def server_error(request: HttpRequest) -> HttpResponse:
    """A 500 outside DRF's handling: JSON under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        body = {"error": "Internal server error; it has been logged"}
        return JsonResponse(body, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    return defaults.server_error(request)
