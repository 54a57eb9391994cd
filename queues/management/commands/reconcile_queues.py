from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from attune.progress import add_progress_argument, command_progress
from queues.reconcile import reconcile_all


class Command(BaseCommand):
    help = (
        "Rebuild every action's Redis queue state from the executions table (idempotent). "
        "Prints one line per action; progress over the actions goes to stderr."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_progress_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        with command_progress(self, options, "actions") as progress:
            reports = reconcile_all(progress=progress)
        for report in reports:
            self.stdout.write(str(report))
