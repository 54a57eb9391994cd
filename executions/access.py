"""Who may read, request and cancel the executions of which action.

- A superuser may do everything.
- Staff may read and cancel every execution, and request any action except
  those that run shell commands (the ``shell`` runner, ``core.local``): a
  raw command on every worker needs an explicit grant, even for staff.
- Anyone else may do only what a Grant gives them or one of their groups,
  on the action itself or on its pack. ``execute`` and ``cancel`` each
  include ``read``. Anyone may cancel what they requested themselves.

Denials name the action; an execution the user may not read is reported as
not found, so its id reveals nothing (not even that it exists).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet

from executions.exceptions import PermissionDenied
from executions.models import Action, Execution, Grant, GrantPermission, Runner

P = GrantPermission
User = AbstractBaseUser | AnonymousUser
# A grant of any of these lets its holder do `key`.
IMPLIED_BY: dict[str, tuple[str, ...]] = {
    P.READ: (P.READ, P.EXECUTE, P.CANCEL),
    P.EXECUTE: (P.EXECUTE,),
    P.CANCEL: (P.CANCEL,),
}


def _is(user: Any, flag: str) -> bool:
    return bool(user is not None and user.is_active and getattr(user, flag, False))


def _holder(user: Any) -> Q:
    return Q(user=user) | Q(group__in=user.groups.all())


def _grants(user: Any, permission: str) -> QuerySet[Grant]:
    return Grant.objects.filter(_holder(user), permission__in=IMPLIED_BY[permission])


def is_granted(user: Any, permission: str, action: Action) -> bool:
    """Whether a grant of the user or one of their groups gives ``permission``
    on ``action`` (or on its pack)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    return _grants(user, permission).filter(Q(action=action) | Q(pack_id=action.pack_id)).exists()


def may(user: Any, permission: str, action: Action) -> bool:
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if _is(user, "is_superuser"):
        return True
    if _is(user, "is_staff") and not (permission == P.EXECUTE and action.runner == Runner.SHELL):
        return True
    return is_granted(user, permission, action)


def require_execute(user: Any, action: Action) -> None:
    if not may(user, P.EXECUTE, action):
        reason = (
            "it runs shell commands, which needs an explicit grant"
            if action.runner == Runner.SHELL and _is(user, "is_staff")
            else "no grant gives you 'execute' on it or its pack"
        )
        raise PermissionDenied(f"You may not run action '{action.ref}': {reason}")


def readable_executions(user: Any, executions: QuerySet[Execution] | None = None) -> QuerySet[Execution]:
    """The executions the user may see: all for staff, else those of the
    actions (or packs) some grant lets them read."""
    executions = Execution.objects.all() if executions is None else executions
    if user is None or not user.is_authenticated or not user.is_active:
        return executions.none()
    if _is(user, "is_staff") or _is(user, "is_superuser"):
        return executions
    grants = _grants(user, P.READ)
    action_ids = grants.filter(action__isnull=False).values("action_id")
    pack_ids = grants.filter(pack__isnull=False).values("pack_id")
    return executions.filter(
        Q(action_id__in=action_ids) | Q(action__pack_id__in=pack_ids) | Q(requested_by=user)
    )


def may_read(user: Any, execution: Execution) -> bool:
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if execution.requested_by_id is not None and execution.requested_by_id == user.pk:
        return True
    return may(user, P.READ, execution.action)


def require_cancel(user: Any, execution: Execution) -> None:
    """Cancelling: the requester, a holder of a ``cancel`` grant, or staff."""
    if execution.requested_by_id is not None and execution.requested_by_id == user.pk:
        return
    if not may(user, P.CANCEL, execution.action):
        raise PermissionDenied(
            f"You may not cancel executions of action '{execution.action_ref}': you did not request "
            "this one and no grant gives you 'cancel' on it or its pack"
        )
