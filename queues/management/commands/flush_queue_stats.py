import signal
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

        def stop(signum: int, frame: object) -> None:
            flusher.stop()

        # A supervisor stops it with SIGTERM, a person with Ctrl-C: either way
        # the pass in progress ends and the lock is released for the others.
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"flushing queue stats every {flusher.period:g} s while holding the lock")
        flusher.run_forever()
        self.stdout.write("stopped")
