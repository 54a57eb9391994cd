from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from queues.models import QueueStats
from queues.services import list_queue_stats

COLUMNS = [
    "action",
    "group",
    "waiting",
    "active",
    "limit",
    "oldest wait",
    "enqueued",
    "completed",
    "terminal",
    "updated",
]


def _age(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _row(stats: QueueStats, now: datetime) -> list[str]:
    return [
        stats.action.ref,
        stats.group,
        str(stats.queue_length),
        str(stats.active_count),
        "unlimited" if stats.max_concurrent is None else str(stats.max_concurrent),
        _age(stats.oldest_enqueued_at, now),
        str(stats.total_enqueued),
        str(stats.total_completed),
        str(stats.total_terminal),
        f"{_age(stats.last_updated, now)} ago",
    ]


class Command(BaseCommand):
    help = "Print the persisted statistics of every queue (a row per group of an action), deepest first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--active", action="store_true", help="only queues with executions waiting or running"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        rows = list_queue_stats(active_only=options["active"])
        if not rows:
            self.stdout.write("no busy queues" if options["active"] else "no queue statistics yet")
            return
        now = timezone.now()
        table = [COLUMNS, *(_row(stats, now) for stats in rows)]
        widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
        for line in table:
            # The two names to the left, the figures to the right.
            cells = [line[0].ljust(widths[0]), line[1].ljust(widths[1])] + [
                cell.rjust(width) for cell, width in zip(line[2:], widths[2:], strict=True)
            ]
            self.stdout.write("  ".join(cells).rstrip())
