"""The operator's management commands, run with call_command as manage.py
runs them: output, effects and refusals."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from executions.models import Execution, ExecutionStatus
from executions.services import request_execution
from queues.models import QueueStats
from queues.stats import flush_once

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus


def run(*args: Any) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def queue(make_action: Any, redis_db: Any) -> list[Execution]:
    """test.busy: one running and three waiting, flushed into queue_stats."""
    action = make_action("busy", concurrency_limit=1)
    executions = [request_execution(action.ref) for _ in range(4)]
    QueueStats.objects.upsert(make_action("idle"), total_enqueued=2, total_completed=2, total_terminal=2)
    flush_once()
    return executions


def test_it_prints_a_table_of_every_queue_deepest_first(queue: Any) -> None:
    lines = run("queue_stats").splitlines()

    assert lines[0].split() == [
        "action",
        "group",
        "waiting",
        "active",
        "limit",
        "oldest",
        "wait",
        "enqueued",
        "completed",
        "terminal",
        "updated",
    ]
    assert lines[1].split()[:5] == ["test.busy", "default", "3", "1", "1"]
    assert lines[1].split()[6:9] == ["4", "0", "0"]
    assert lines[2].split()[:6] == ["test.idle", "default", "0", "0", "unlimited", "-"]
    assert len(lines) == 3


def test_it_prints_only_busy_queues_with_active(queue: Any) -> None:
    lines = run("queue_stats", "--active").splitlines()

    assert [line.split()[0] for line in lines[1:]] == ["test.busy"]


def test_it_says_so_when_there_is_nothing_to_show(db: None) -> None:
    assert run("queue_stats").strip() == "no queue statistics yet"
    assert run("queue_stats", "--active").strip() == "no busy queues"


def test_it_clears_stale_rows_of_idle_queues(queue: Any) -> None:
    QueueStats.objects.filter(action__name="idle").update(last_updated=timezone.now() - timedelta(hours=2))

    output = run("clear_stale_queue_stats", "--older-than", "3600")

    assert output.strip() == "1 stale queue statistics rows deleted (idle for more than 3600 s)"
    assert list(QueueStats.objects.values_list("action__ref", flat=True)) == ["test.busy"]


def test_it_refuses_a_negative_age(db: None) -> None:
    with pytest.raises(CommandError, match="--older-than must be 0 or more seconds, got -5"):
        call_command("clear_stale_queue_stats", "--older-than", "-5")


def test_it_refuses_to_purge_without_yes(queue: Any) -> None:
    with pytest.raises(CommandError, match="run again with --yes to confirm"):
        call_command("purge_queue", "test.busy")

    assert Execution.objects.filter(status=S.QUEUED).count() == 3


def test_it_purges_the_waiting_executions_with_yes(queue: Any) -> None:
    output = run("purge_queue", "test.busy", "--yes")

    assert output.strip() == "test.busy: 3 waiting executions cancelled, 0 had already left the queue"
    assert Execution.objects.filter(status=S.CANCELLED).count() == 3
    assert Execution.objects.get(pk=queue[0].pk).status == S.SCHEDULED


def test_it_names_an_unknown_action_when_purging(db: None) -> None:
    with pytest.raises(CommandError, match=re.escape("Action 'nope.gone' not found")):
        call_command("purge_queue", "nope.gone", "--yes")


def test_it_cancels_one_execution(queue: Any) -> None:
    output = run("cancel_execution", str(queue[2].pk))

    assert output.strip() == f"{queue[2].pk} cancelled"


def test_it_refuses_to_cancel_an_execution_that_ended_or_does_not_exist(queue: Any) -> None:
    call_command("cancel_execution", str(queue[2].pk), stdout=StringIO())

    with pytest.raises(CommandError, match="has already ended with status 'cancelled'"):
        call_command("cancel_execution", str(queue[2].pk))
    with pytest.raises(CommandError, match="Execution 'nope' not found"):
        call_command("cancel_execution", "nope")


def test_it_creates_an_api_token_that_authenticates(db: None) -> None:
    User.objects.create_user("erin")

    token = run("create_api_token", "erin").strip()
    again = run("create_api_token", "erin").strip()
    reset = run("create_api_token", "erin", "--reset").strip()

    assert token == again and len(token) == 40
    assert reset != token
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {reset}")
    assert client.get("/api/v1/packs").status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get("/api/v1/packs").status_code == 401


def test_it_refuses_a_token_for_an_unknown_or_inactive_user(db: None) -> None:
    User.objects.create_user("gone", is_active=False)

    with pytest.raises(CommandError, match="User 'nobody' not found"):
        call_command("create_api_token", "nobody")
    with pytest.raises(CommandError, match="User 'gone' is inactive"):
        call_command("create_api_token", "gone")


def test_it_flushes_queue_stats_once(make_action: Any, redis_db: Any) -> None:
    action = make_action("flushed", concurrency_limit=1)
    request_execution(action.ref)
    request_execution(action.ref)

    output = run("flush_queue_stats")

    assert output.startswith("1 queues read, 1 rows written, 0 without live state")
    assert QueueStats.objects.get(action=action).queue_length == 1


def test_it_rebuilds_one_actions_row_from_the_executions_table(queue: Any) -> None:
    QueueStats.objects.filter(action__name="busy").update(queue_length=50, total_enqueued=0)

    output = run("rebuild_queue_stats", "--action", "test.busy")

    assert output.splitlines() == [
        "test.busy: 3 waiting, 1 active, 4 enqueued, 0 completed, 0 terminal",
        "1 queue statistics rows rebuilt",
    ]
    row = QueueStats.objects.get(action__name="busy")
    assert (row.queue_length, row.total_enqueued) == (3, 4)


def test_it_names_an_unknown_action_when_rebuilding(db: None) -> None:
    with pytest.raises(CommandError, match=re.escape("Action 'nope.gone' not found")):
        call_command("rebuild_queue_stats", "--action", "nope.gone")


def test_it_requests_as_a_user_checking_their_grants(make_action: Any, redis_db: Any) -> None:
    from executions.models import Grant, GrantPermission

    action = make_action("as_user")
    User.objects.create_user("erin")
    refused = StringIO()
    with pytest.raises(CommandError, match=re.escape("You may not run action 'test.as_user'")):
        call_command("run_action", action.ref, "--user", "erin", stdout=refused)
    Grant.objects.create(
        permission=GrantPermission.EXECUTE, action=action, user=User.objects.get(username="erin")
    )
    call_command("run_action", action.ref, "--user", "erin", stdout=StringIO())
    call_command("run_action", action.ref, stdout=StringIO())

    requesters = list(Execution.objects.order_by("created").values_list("requested_by__username", flat=True))
    assert requesters == ["erin", None]
    with pytest.raises(CommandError, match="--user nobody: no such user"):
        call_command("run_action", action.ref, "--user", "nobody")


def test_it_refuses_a_concurrency_the_action_cannot_take(make_action: Any, redis_db: Any) -> None:
    action = make_action("bad_limit", concurrency_limit=2)

    with pytest.raises(CommandError, match=r"--concurrency 0 refused: concurrency_limit: "):
        call_command("run_action", action.ref, "--concurrency", "0")

    action.refresh_from_db()
    assert action.concurrency_limit == 2
    assert not Execution.objects.filter(action=action).exists()
