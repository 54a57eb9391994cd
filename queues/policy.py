"""Which concurrency limit applies to an action."""

from __future__ import annotations

from django.conf import settings

from executions.models import Action


def resolve_limit(action: Action) -> int | None:
    """The action's own limit, else its pack's, else the global default.

    None means unlimited: executions are granted at once and never wait.
    """
    if action.concurrency_limit is not None:
        return int(action.concurrency_limit)
    if action.pack.concurrency_limit is not None:
        return int(action.pack.concurrency_limit)
    default = settings.ATTUNE_DEFAULT_CONCURRENCY
    return None if default is None else int(default)


def lease_ms() -> int:
    return int(float(settings.ATTUNE_LEASE_SECONDS) * 1000)
