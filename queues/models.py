"""The persisted picture of each queue, for the API, the admin and SQL.

A queue is an action and one of its groups (queues.keys.QueueRef): an
action no policy splits has one row, group ``default``; a policy with
``parameters`` gives each combination of values a row of its own.

The live truth is in Redis (queues/gate.py); this table follows it within
one flush interval (queues/stats.py) so that operators can query queues
with SQL and the API can serve them without touching the hot path.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import connection, models
from django.db.models import Q
from django.utils import timezone

from executions.models import Action
from queues.keys import DEFAULT_GROUP

# Columns an upsert writes; (action, group) is the conflict target.
STAT_FIELDS = (
    "queue_length",
    "active_count",
    "max_concurrent",
    "oldest_enqueued_at",
    "total_enqueued",
    "total_completed",
    "total_terminal",
    "last_updated",
)


class QueueStatsQuerySet(models.QuerySet["QueueStats"]):
    def busy(self) -> QueueStatsQuerySet:
        """Queues with something waiting or running."""
        return self.filter(Q(queue_length__gt=0) | Q(active_count__gt=0))

    def idle(self) -> QueueStatsQuerySet:
        return self.filter(queue_length=0, active_count=0)

    def busiest_first(self) -> QueueStatsQuerySet:
        return self.select_related("action").order_by(
            "-queue_length", "-active_count", "action__ref", "group"
        )


class QueueStatsManager(models.Manager["QueueStats"]):
    """Repository functions: the only way the rest of Attune writes rows."""

    def get_queryset(self) -> QueueStatsQuerySet:
        return QueueStatsQuerySet(self.model, using=self._db)

    def for_action(self, action: Action | int) -> list[QueueStats]:
        """The rows of one action's queues, ``default`` first, then by group."""
        action_id = action.pk if isinstance(action, Action) else action
        rows = list(self.get_queryset().select_related("action").filter(action_id=action_id))
        return sorted(rows, key=lambda row: (row.group != DEFAULT_GROUP, row.group))

    def list_all(self) -> QueueStatsQuerySet:
        return self.get_queryset().busiest_first()

    def list_active(self) -> QueueStatsQuerySet:
        return self.get_queryset().busy().busiest_first()

    def upsert(self, action: Action | int, group: str = DEFAULT_GROUP, **fields: Any) -> QueueStats:
        """Create or overwrite one queue's row; unspecified counters are 0."""
        action_id = action.pk if isinstance(action, Action) else action
        fields.setdefault("last_updated", timezone.now())
        row = QueueStats(action_id=action_id, group=group, **fields)
        self.batch_upsert([row])
        return row

    def batch_upsert(self, rows: Iterable[QueueStats], *, only_newer: bool = False) -> int:
        """Insert or update many rows in one statement; returns how many
        rows were sent.

        With ``only_newer`` a row is overwritten only if the incoming
        ``last_updated`` is not older than the stored one. Two flushers can
        overlap for a moment (a lock handed over, or the command run beside
        a worker); the guard keeps an older snapshot from undoing a newer
        one. Without it (a rebuild from the database), the row is replaced.
        """
        rows = list(rows)
        if not rows:
            return 0
        table = connection.ops.quote_name(self.model._meta.db_table)
        columns = ["action_id", "group", *STAT_FIELDS]
        quoted = [connection.ops.quote_name(column) for column in columns]
        placeholders = ", ".join(["(" + ", ".join(["%s"] * len(columns)) + ")"] * len(rows))
        updates = ", ".join(f"{q} = EXCLUDED.{q}" for q in quoted[2:])
        last_updated = connection.ops.quote_name("last_updated")
        guard = f" WHERE {table}.{last_updated} <= EXCLUDED.{last_updated}" if only_newer else ""
        # Django's bulk_create(update_conflicts=True) cannot express the
        # guard, and the statement is plain SQL that PostgreSQL and SQLite share.
        sql = (
            f"INSERT INTO {table} ({', '.join(quoted)}) VALUES {placeholders} "
            f"ON CONFLICT ({quoted[0]}, {quoted[1]}) DO UPDATE SET {updates}{guard}"
        )
        params: list[Any] = []
        for row in rows:
            params.extend([row.action_id, row.group])
            params.extend(
                self.model._meta.get_field(name).get_db_prep_save(getattr(row, name), connection)
                for name in STAT_FIELDS
            )
        # One statement is atomic on its own.
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        return len(rows)

    def delete_for_action(self, action: Action | int) -> bool:
        action_id = action.pk if isinstance(action, Action) else action
        deleted, _ = self.get_queryset().filter(action_id=action_id).delete()
        return deleted > 0

    def clear_stale(self, older_than_seconds: float) -> int:
        """Delete idle rows whose queue has not changed for that long;
        returns how many. A busy row is never stale, however old."""
        cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
        deleted, _ = self.get_queryset().idle().filter(last_updated__lt=cutoff).delete()
        return deleted


class QueueStats(models.Model):
    """One queue (an action and one of its groups), as last persisted.

    - ``queue_length``: executions waiting in the FIFO queue.
    - ``active_count``: executions holding a slot (scheduled, running, canceling).
    - ``max_concurrent``: the limit in force; null means unlimited.
    - ``oldest_enqueued_at``: when the head of the queue was enqueued; null if empty.
    - ``total_enqueued``: executions ever admitted through the gate.
    - ``total_completed``: of those, the ones that ended ``completed``, and only those.
    - ``total_terminal``: of those, the ones that ended in any terminal status
      (completed, failed, timeout, cancelled, abandoned); so
      ``total_terminal - total_completed`` is everything that did not succeed.
      A request cancelled before it reached the gate is in none of the three.
    - ``last_updated``: when the queue last changed state (the gate's clock),
      which is what the flusher compares to decide whether to write.
    """

    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="queue_stats")
    # As long as Execution.queue_group: queues.policy.group_of hashes longer values.
    group = models.CharField(max_length=200, default=DEFAULT_GROUP)
    queue_length = models.PositiveIntegerField(default=0)
    active_count = models.PositiveIntegerField(default=0)
    max_concurrent = models.PositiveIntegerField(null=True, blank=True)
    oldest_enqueued_at = models.DateTimeField(null=True, blank=True)
    total_enqueued = models.PositiveBigIntegerField(default=0)
    total_completed = models.PositiveBigIntegerField(default=0)
    total_terminal = models.PositiveBigIntegerField(default=0)
    last_updated = models.DateTimeField(db_index=True)

    objects = QueueStatsManager()

    class Meta:
        verbose_name = "queue statistics"
        verbose_name_plural = "queue statistics"
        ordering = ["-queue_length", "-active_count"]
        constraints = [
            models.UniqueConstraint(fields=["action", "group"], name="queue_stats_one_row_per_queue")
        ]

    def __str__(self) -> str:
        return f"{self.action_id}/{self.group}: {self.queue_length} waiting, {self.active_count} active"

    @property
    def is_busy(self) -> bool:
        return self.queue_length > 0 or self.active_count > 0

    def as_dict(self) -> dict[str, Any]:
        """The counters, for comparisons and reports."""
        return {name: getattr(self, name) for name in STAT_FIELDS if name != "last_updated"}


def action_total(rows: list[QueueStats]) -> QueueStats:
    """One action's rows added up (unsaved; ``group`` is that of the first
    row): counts summed, the oldest wait and the latest update of any
    group. ``max_concurrent`` is each group's limit, the same for all."""
    first = rows[0]
    if len(rows) == 1:
        return first
    oldest = [row.oldest_enqueued_at for row in rows if row.oldest_enqueued_at is not None]
    total = QueueStats(
        action=first.action,
        group=first.group,
        max_concurrent=first.max_concurrent,
        oldest_enqueued_at=min(oldest) if oldest else None,
        last_updated=max(row.last_updated for row in rows),
    )
    for name in ("queue_length", "active_count", "total_enqueued", "total_completed", "total_terminal"):
        setattr(total, name, sum(getattr(row, name) for row in rows))
    return total
