from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from queues.services import clear_stale_queue_stats


class Command(BaseCommand):
    help = (
        "Delete the queue statistics of idle queues that have not changed for --older-than seconds "
        "(an action's row comes back when its queue is next used)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", type=float, default=3600.0, metavar="SECONDS")

    def handle(self, *args: Any, **options: Any) -> None:
        older_than = options["older_than"]
        if older_than < 0:
            raise CommandError(f"--older-than must be 0 or more seconds, got {older_than:g}")
        deleted = clear_stale_queue_stats(older_than)
        self.stdout.write(
            f"{deleted} stale queue statistics rows deleted (idle for more than {older_than:g} s)"
        )
