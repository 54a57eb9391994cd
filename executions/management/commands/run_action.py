import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from executions import services
from executions.exceptions import AttuneError
from executions.models import TERMINAL_STATUSES, Execution


def _parse_param(raw: str) -> tuple[str, Any]:
    name, sep, value = raw.partition("=")
    if not sep or not name:
        raise CommandError(f"--param must look like name=value, got {raw!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


class Command(BaseCommand):
    help = "Request executions of an action and print each one's id and status."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action_ref")
        parser.add_argument(
            "--param", action="append", default=[], help="name=value (value parsed as JSON if it can be)"
        )
        parser.add_argument(
            "--count",
            type=int,
            default=1,
            help="how many to request, in batches of up to 1,000 (one transaction and one gate step each)",
        )
        parser.add_argument("--concurrency", type=int, help="set the action's concurrency limit first")
        parser.add_argument(
            "--wait", action="store_true", help="wait for all to end and print the start order"
        )
        parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait with --wait")

    def handle(self, *args: Any, **options: Any) -> None:
        params = dict(_parse_param(raw) for raw in options["param"])
        if options["count"] < 1:
            raise CommandError("--count must be at least 1")
        try:
            if options["concurrency"] is not None:
                action = services.get_action(options["action_ref"])
                action.concurrency_limit = options["concurrency"]
                action.save()
            ids = []
            # Batches: one transaction and one gate step each, FIFO in order.
            remaining = options["count"]
            while remaining:
                size = min(remaining, services.MAX_BATCH)
                for execution in services.request_executions(options["action_ref"], [params] * size):
                    ids.append(execution.pk)
                    self.stdout.write(f"{execution.pk} {execution.status} seq={execution.queue_seq}")
                remaining -= size
        except AttuneError as exc:
            raise CommandError(str(exc)) from exc
        if options["wait"]:
            self._wait(ids, options["timeout"])

    def _wait(self, ids: list[Any], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not Execution.objects.filter(pk__in=ids).exclude(status__in=TERMINAL_STATUSES).exists():
                break
            time.sleep(0.2)
        self.stdout.write("start order (by grant):")
        for execution in Execution.objects.filter(pk__in=ids).order_by("grant_seq"):
            started = execution.started_at.strftime("%H:%M:%S.%f")[:-3] if execution.started_at else "-"
            self.stdout.write(
                f"  seq={execution.queue_seq} grant={execution.grant_seq} started={started} "
                f"{execution.status} {execution.pk}"
            )
