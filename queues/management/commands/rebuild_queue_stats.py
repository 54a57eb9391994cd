from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from attune.progress import add_progress_argument, command_progress
from executions.exceptions import AttuneError
from executions.services import get_action
from queues.stats import rebuild


class Command(BaseCommand):
    help = (
        "Recompute queue_stats from the executions table, for when the rows are in doubt. "
        "If the live Redis counters are in doubt too, run reconcile_queues first. "
        "Progress over the actions goes to stderr."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--action", dest="action_ref", help="only this action (ref)")
        add_progress_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            actions = [get_action(options["action_ref"])] if options["action_ref"] else None
        except AttuneError as exc:
            raise CommandError(str(exc)) from exc
        with command_progress(self, options, "actions") as progress:
            rows = rebuild(actions, progress=progress)
        for row in rows:
            self.stdout.write(
                f"{row.action.ref}: {row.queue_length} waiting, {row.active_count} active, "
                f"{row.total_enqueued} enqueued, {row.total_completed} completed, "
                f"{row.total_terminal} terminal"
            )
        self.stdout.write(f"{len(rows)} queue statistics rows rebuilt")
