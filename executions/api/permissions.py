"""Who may do what through the API.

Every endpoint needs an authenticated user. Reading is open to any of
them, and so is requesting and cancelling executions; defining what runs
(packs, actions, their limits) and purging a queue is for staff.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request


def _authenticated(request: Request) -> bool:
    return bool(request.user and request.user.is_authenticated)


class IsStaff(BasePermission):
    message = "This needs a staff account."

    def has_permission(self, request: Request, view: Any) -> bool:
        return _authenticated(request) and bool(request.user.is_staff)


class IsStaffOrReadOnly(BasePermission):
    message = "Creating or changing packs and actions needs a staff account."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not _authenticated(request):
            return False
        return request.method in SAFE_METHODS or bool(request.user.is_staff)


# The fields of an action that say which code runs.
CODE_FIELDS = ("runner", "entrypoint")


class SuperuserDefinesCode(BasePermission):
    """Creating an action, or changing which code it runs, is for
    superusers: a staff account that could point a python action at any
    callable could run anything without a grant, which the shell rule
    (executions.access) exists to prevent. Staff still change the rest of
    an action (limits, queue settings, enabled, labels)."""

    message = (
        "Defining which code an action runs (creating one, or changing its runner or entrypoint) "
        "needs a superuser."
    )

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method == "POST" and getattr(view, "action", None) == "create":
            return bool(request.user and request.user.is_superuser)
        return True

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        if request.method not in ("PUT", "PATCH") or request.user.is_superuser:
            return True
        data = request.data if isinstance(request.data, dict) else {}
        return all(data[name] == getattr(obj, name) for name in CODE_FIELDS if name in data)
