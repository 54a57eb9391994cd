from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from executions.exceptions import AttuneError
from executions.services import cancel_execution


class Command(BaseCommand):
    help = "Cancel one execution: a waiting one at once, a running one by stopping it on its worker."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("execution_id")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            execution = cancel_execution(options["execution_id"])
        except AttuneError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{execution.pk} {execution.status}")
