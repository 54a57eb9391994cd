"""The audit trail: who changed what runs, who may run it, or what waits.

Packs, actions and grants are recorded by signal handlers on every save
and delete, whatever made it (API, admin, a command, a shell), so no path
can skip the trail; cancels and purges by the services that make them. The
entry is written in the transaction of the change it records: both land or
neither does.

Who did it comes from the caller when it knows (the services are given the
user), else from the web request being served (bound by
attune.middleware.AuditRequestMiddleware); with neither, it was a command.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.http import HttpRequest

from executions.models import AuditEntry

_current_request: ContextVar[HttpRequest | None] = ContextVar("attune_audit_request", default=None)
SOURCE_BY_PATH = (("/api/", "api"), ("/admin/", "admin"), ("/dashboard/", "dashboard"))


@contextmanager
def serving(request: HttpRequest) -> Iterator[None]:
    """Attribute what happens while ``request`` is served to its user."""
    token = _current_request.set(request)
    try:
        yield
    finally:
        _current_request.reset(token)


def _source(request: HttpRequest | None) -> str:
    if request is None:
        return "command"
    return next((name for prefix, name in SOURCE_BY_PATH if request.path.startswith(prefix)), "web")


def _request_user(request: HttpRequest | None) -> Any:
    # DRF authenticates inside the view and sets the user on the Django
    # request too, so a token-authenticated API caller is found here.
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


def snapshot(instance: models.Model, exclude: frozenset[str] = frozenset({"id"})) -> dict[str, Any]:
    """The instance's own fields as JSON values; a foreign key as its
    target's text (a pack's ref, a user's name)."""
    values: dict[str, Any] = {}
    for field in instance._meta.concrete_fields:
        if field.name in exclude:
            continue
        if field.is_relation:
            related = getattr(instance, field.name)
            values[field.name] = None if related is None else str(related)
        else:
            values[field.name] = getattr(instance, field.attname)
    return json.loads(json.dumps(values, cls=DjangoJSONEncoder))


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only what differs, on both sides."""
    names = [name for name in after if before.get(name) != after[name]]
    return {name: before.get(name) for name in names}, {name: after[name] for name in names}


def record(
    kind: str,
    target: str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    actor: Any = None,
) -> AuditEntry:
    request = _current_request.get()
    actor = actor if actor is not None and actor.is_authenticated else _request_user(request)
    return AuditEntry.objects.create(
        kind=kind,
        target=target[:255],
        before=before,
        after=after,
        actor=actor,
        actor_name=actor.get_username() if actor is not None else "",
        source=_source(request),
    )
