"""Live queue figures straight from the gate's Redis counters, for the
dashboard, Prometheus and anyone who needs "now" rather than the last
persisted row."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from executions.models import Action
from queues.gate import get_gate, merged


@dataclass(frozen=True)
class LiveGroup:
    """One queue of an action: "default", or one combination of the values
    of a policy's parameters."""

    name: str
    queue_length: int
    active_count: int
    oldest_age_seconds: float | None


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
    # Every group that exists, busiest first; an action without a policy
    # splitting it has only "default".
    groups: list[LiveGroup] = field(default_factory=list)


OTHER_GROUP = "other"


def busiest_groups(groups: list[LiveGroup], max_groups: int) -> list[LiveGroup]:
    """The ``max_groups`` busiest of an action's groups (``groups`` comes
    busiest first) and the rest added up as one group named "other" (its
    age the oldest of theirs): a parameter with a million values cannot
    make a million series or table lines."""
    rest = groups[max_groups:]
    if not rest:
        return groups
    ages = [group.oldest_age_seconds for group in rest if group.oldest_age_seconds is not None]
    other = LiveGroup(
        OTHER_GROUP,
        sum(group.queue_length for group in rest),
        sum(group.active_count for group in rest),
        max(ages) if ages else None,
    )
    return [*groups[:max_groups], other]


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
    per_group = gate.group_snapshots([action.pk for action in actions])
    snapshots = [merged(per_group[action.pk]) for action in actions]

    def age(oldest_ms: int | None) -> float | None:
        return None if oldest_ms is None else max(0, now_ms - oldest_ms) / 1000

    return [
        LiveQueue(
            action_id=action.pk,
            action_ref=action.ref,
            queue_length=snap.waiting,
            active_count=snap.active,
            max_concurrent=snap.limit,
            oldest_enqueued_at=_from_ms(snap.oldest_enqueued_ms),
            oldest_age_seconds=age(snap.oldest_enqueued_ms),
            total_enqueued=snap.total_enqueued,
            total_completed=snap.total_completed,
            total_terminal=snap.total_terminal,
            last_updated=_from_ms(snap.updated_ms),
            terminal_by_status=snap.terminal_by_status,
            rejected_by_reason=snap.rejected_by_reason,
            groups=sorted(
                (
                    LiveGroup(group.queue.group, group.waiting, group.active, age(group.oldest_enqueued_ms))
                    for group in per_group[action.pk]
                ),
                key=lambda group: (-(group.queue_length + group.active_count), group.name),
            ),
        )
        for action, snap in zip(actions, snapshots, strict=True)
    ]
