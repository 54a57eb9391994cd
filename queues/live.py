"""Live queue figures straight from the gate's Redis counters, for the
dashboard, Prometheus and anyone who needs "now" rather than the last
persisted row."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from executions.models import Action
from queues.gate import get_gate


@dataclass(frozen=True)
class LiveQueue:
    action_id: int
    action_ref: str
    queue_length: int
    active_count: int
    max_concurrent: int | None
    oldest_enqueued_at: datetime | None
    oldest_age_seconds: float | None
    total_enqueued: int
    total_completed: int
    total_terminal: int
    last_updated: datetime | None
    terminal_by_status: dict[str, int] = field(default_factory=dict)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)


def _from_ms(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, tz=UTC)


def live_queues(actions: list[Action] | None = None) -> list[LiveQueue]:
    """One LiveQueue per action, its groups added up, read in three Redis
    round trips. Ages are on
    the Redis clock, the same clock that stamped the entries."""
    if actions is None:
        actions = list(Action.objects.select_related("pack").order_by("ref"))
    gate = get_gate()
    now_ms = gate.now_ms()
    snapshots = gate.action_snapshots([action.pk for action in actions])
    return [
        LiveQueue(
            action_id=action.pk,
            action_ref=action.ref,
            queue_length=snap.waiting,
            active_count=snap.active,
            max_concurrent=snap.limit,
            oldest_enqueued_at=_from_ms(snap.oldest_enqueued_ms),
            oldest_age_seconds=None
            if snap.oldest_enqueued_ms is None
            else max(0, now_ms - snap.oldest_enqueued_ms) / 1000,
            total_enqueued=snap.total_enqueued,
            total_completed=snap.total_completed,
            total_terminal=snap.total_terminal,
            last_updated=_from_ms(snap.updated_ms),
            terminal_by_status=snap.terminal_by_status,
            rejected_by_reason=snap.rejected_by_reason,
        )
        for action, snap in zip(actions, snapshots, strict=True)
    ]
