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
