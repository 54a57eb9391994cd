from typing import Any

from django.core.management.base import BaseCommand

from executions.core_pack import load_core_pack


class Command(BaseCommand):
    help = "Create or update the built-in core pack (core.noop, core.echo, core.sleep, ...)."

    def handle(self, *args: Any, **options: Any) -> None:
        for action in load_core_pack():
            self.stdout.write(f"{action.ref}")
