"""Assertions over executions shared by the integration and acceptance tests."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from executions.models import TERMINAL_STATUSES, Execution
from tests.conftest import wait_until


def request_indexed(action_ref: str, count: int, **params: Any) -> list[str]:
    from executions.services import request_execution

    return [str(request_execution(action_ref, {**params, "index": i}).pk) for i in range(count)]


def wait_all_terminal(ids: Iterable[str], *, timeout: float) -> list[Execution]:
    ids = list(ids)

    def done() -> bool:
        return not Execution.objects.filter(pk__in=ids).exclude(status__in=TERMINAL_STATUSES).exists()

    wait_until(done, timeout=timeout, interval=0.25, message=f"{len(ids)} executions to end")
    return list(Execution.objects.filter(pk__in=ids))


def in_request_order(executions: Iterable[Execution]) -> list[Execution]:
    return sorted(executions, key=lambda e: e.queue_seq if e.queue_seq is not None else -1)


def max_concurrency(executions: Iterable[Execution]) -> int:
    """Most executions whose [started_at, completed_at] intervals overlap."""
    events: list[tuple[datetime, int]] = []
    for execution in executions:
        if execution.started_at and execution.completed_at:
            events.append((execution.started_at, 1))
            events.append((execution.completed_at, -1))
    # An end and a start at the same instant do not overlap: ends first.
    events.sort(key=lambda event: (event[0], event[1]))
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def action_admin_form(action: Any, **changes: Any) -> dict[str, Any]:
    """The admin change form of ``action`` as a browser posts it, with ``changes``."""
    form: dict[str, Any] = {
        "label": "",
        "description": "",
        "enabled": "on",
        "runner": "python",
        "entrypoint": action.entrypoint,
        "parameters_schema": '{"type": "object"}',
        "timeout_seconds": 600,
        "celery_queue": "default",
        "concurrency_limit": action.concurrency_limit or "",
        "max_queue_length": 10000,
        "queue_timeout_seconds": 3600,
    }
    form.update(changes)
    return form
