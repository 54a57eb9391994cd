import json
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count, Q

from attune.progress import Progress, add_progress_argument, command_progress
from executions import catalog, services
from executions.exceptions import AttuneError
from executions.models import ACTIVE_STATUSES, TERMINAL_STATUSES, WAITING_STATUSES, Execution

# How often --wait reads the executions' statuses: one query each time.
WAIT_POLL_SECONDS = 0.2


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
        parser.add_argument(
            "--concurrency",
            type=int,
            metavar="N",
            help=(
                "first set the action's concurrency limit to N, for good: the limit is saved on the "
                "action and stays after this command (change it again here, in the API or the admin)"
            ),
        )
        parser.add_argument(
            "--wait",
            action="store_true",
            help=(
                "wait for all to end and print the start order; meanwhile show how many are done, "
                "running and waiting (on stderr)"
            ),
        )
        parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait with --wait")
        parser.add_argument(
            "--user",
            metavar="USERNAME",
            help="request as this user: their grants are checked and they are recorded as the "
            "requester (without it, the command acts as the operator, who may run anything)",
        )
        add_progress_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        params = dict(_parse_param(raw) for raw in options["param"])
        if options["count"] < 1:
            raise CommandError("--count must be at least 1")
        requester = self._user(options["user"])
        try:
            if options["concurrency"] is not None:
                try:
                    action = catalog.update_action(
                        services.get_action(options["action_ref"]), concurrency_limit=options["concurrency"]
                    )
                except ValidationError as exc:
                    problems = "; ".join(
                        f"{name}: {' '.join(errs)}" for name, errs in exc.message_dict.items()
                    )
                    raise CommandError(f"--concurrency {options['concurrency']} refused: {problems}") from exc
                self.stdout.write(
                    f"concurrency limit of {action.ref} set to {action.concurrency_limit} "
                    "(kept after this command)"
                )
            ids = []
            # Batches: one transaction and one gate step each, FIFO in order.
            remaining = options["count"]
            while remaining:
                size = min(remaining, services.MAX_BATCH)
                batch = services.request_executions(
                    options["action_ref"], [params] * size, requested_by=requester
                )
                for execution in batch:
                    ids.append(execution.pk)
                    self.stdout.write(f"{execution.pk} {execution.status} seq={execution.queue_seq}")
                remaining -= size
        except AttuneError as exc:
            raise CommandError(str(exc)) from exc
        if options["wait"]:
            with command_progress(self, options, "executions") as progress:
                self._wait(ids, options["timeout"], progress)
            self._print_start_order(ids)

    def _user(self, username: str | None) -> Any:
        if username is None:
            return None
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"--user {username}: no such user")
        return user

    def _wait(self, ids: list[Any], timeout: float, progress: Progress) -> None:
        deadline = time.monotonic() + timeout
        while True:
            counts = Execution.objects.filter(pk__in=ids).aggregate(
                done=Count("pk", filter=Q(status__in=TERMINAL_STATUSES)),
                running=Count("pk", filter=Q(status__in=ACTIVE_STATUSES)),
                waiting=Count("pk", filter=Q(status__in=WAITING_STATUSES)),
            )
            progress.update(counts["done"], len(ids), running=counts["running"], waiting=counts["waiting"])
            ended = not counts["running"] and not counts["waiting"]
            if ended or time.monotonic() >= deadline:
                return
            time.sleep(WAIT_POLL_SECONDS)

    def _print_start_order(self, ids: list[Any]) -> None:
        self.stdout.write("start order (by grant):")
        for execution in Execution.objects.filter(pk__in=ids).order_by("grant_seq"):
            started = execution.started_at.strftime("%H:%M:%S.%f")[:-3] if execution.started_at else "-"
            self.stdout.write(
                f"  seq={execution.queue_seq} grant={execution.grant_seq} started={started} "
                f"{execution.status} {execution.pk}"
            )
