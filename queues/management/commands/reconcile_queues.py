from typing import Any

from django.core.management.base import BaseCommand

from queues.reconcile import reconcile_all


class Command(BaseCommand):
    help = "Rebuild every action's Redis queue state from the executions table (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        for report in reconcile_all():
            self.stdout.write(str(report))
