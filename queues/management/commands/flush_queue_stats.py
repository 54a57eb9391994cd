import contextlib
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from queues.stats import StatsFlusher, flush_once


class Command(BaseCommand):
    help = (
        "Write the live queue counters into queue_stats. Workers do this by themselves; "
        "--loop runs a standalone flusher (for deployments that want it apart from the workers)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--loop",
            action="store_true",
            help="keep flushing, taking turns with the workers' flushers through their Redis lock",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["loop"]:
            self.stdout.write(str(flush_once()))
            return
        flusher = StatsFlusher()
        self.stdout.write(f"flushing queue stats every {flusher.period:g} s while holding the lock")
        # Ctrl-C is the way to stop it; run_forever releases the lock on the way out.
        with contextlib.suppress(KeyboardInterrupt):
            flusher.run_forever()
