from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from attune.progress import add_progress_argument, command_progress
from executions.exceptions import AttuneError
from queues.services import purge_queue


class Command(BaseCommand):
    help = (
        "Cancel every execution waiting in an action's queue, head first. Running ones are left alone. "
        "Progress over the waiting executions goes to stderr."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action_ref")
        parser.add_argument("--yes", action="store_true", help="confirm: really cancel them")
        add_progress_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["yes"]:
            raise CommandError(
                f"This cancels every execution waiting for '{options['action_ref']}'; "
                "run again with --yes to confirm."
            )
        try:
            with command_progress(self, options, "executions") as progress:
                report = purge_queue(options["action_ref"], progress=progress)
        except AttuneError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(str(report))
