"""An action split into groups by a policy with ``parameters``: every
surface that shows queues shows each group (the queue_stats rows the
flusher and a rebuild write, the API, ``manage.py queue_stats``, the
dashboard), and an action's totals add its groups up."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from executions.models import Execution, ExecutionStatus, Policy
from executions.services import request_execution
from queues.dashboard import services as dashboard_services
from queues.dashboard.services import overview
from queues.live import OTHER_GROUP
from queues.models import QueueStats
from queues.stats import counts_from_database, flush_once, rebuild
from tests.drive import end

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus
WEB1, WEB2, NO_HOST = '[["web-1"]]', '[["web-2"]]', "[[]]"


@pytest.fixture
def per_host(make_action: Any, redis_db: Any) -> Any:
    """ops.deploy, one per host: web-1 with one running, one done and two
    waiting; web-2 with one running; one request without a host, running."""
    action = make_action(
        "deploy", pack="ops", parameters_schema={"type": "object", "properties": {"host": {}}}
    )
    Policy.objects.create(
        name="one-per-host", scope="action", action=action, concurrency_limit=1, parameters=["host"]
    )
    web1 = [request_execution(action.ref, {"host": "web-1"}).pk for _ in range(4)]
    end(web1[0])
    request_execution(action.ref, {"host": "web-2"})
    request_execution(action.ref, {})
    flush_once()
    return action


def _figures(row: Any) -> tuple[int, int, int | None, int, int, int]:
    return (
        row.queue_length,
        row.active_count,
        row.max_concurrent,
        row.total_enqueued,
        row.total_completed,
        row.total_terminal,
    )


EXPECTED = {
    WEB1: (2, 1, 1, 4, 1, 1),
    WEB2: (0, 1, 1, 1, 0, 0),
    NO_HOST: (0, 1, 1, 1, 0, 0),
}


def test_the_flusher_writes_a_row_per_group(per_host: Any) -> None:
    rows = QueueStats.objects.for_action(per_host)

    # The default group never saw an execution: the policy splits them all.
    assert {row.group: _figures(row) for row in rows if row.group != "default"} == EXPECTED
    waiting = QueueStats.objects.get(action=per_host, group=WEB1)
    first_waiting = Execution.objects.filter(queue_group=WEB1, status=S.QUEUED).order_by("queue_seq")[0]
    # The gate's clock in ms, the row's in microseconds.
    assert abs((waiting.oldest_enqueued_at - first_waiting.enqueued_at).total_seconds()) < 0.01


def test_a_rebuild_from_the_table_gives_the_same_rows(per_host: Any) -> None:
    flushed = {row.group: _figures(row) for row in QueueStats.objects.for_action(per_host)}
    QueueStats.objects.all().delete()

    rebuild([per_host])

    assert {row.group: _figures(row) for row in counts_from_database([per_host])} == EXPECTED
    rebuilt = {row.group: _figures(row) for row in QueueStats.objects.for_action(per_host)}
    assert rebuilt == {group: figures for group, figures in flushed.items() if group in EXPECTED}


def test_the_api_lists_each_group_and_adds_them_up_for_the_action(bob: APIClient, per_host: Any) -> None:
    listing = bob.get("/api/v1/queue-stats").json()["data"]
    one = bob.get(f"/api/v1/actions/{per_host.ref}/queue-stats").json()["data"]

    listed = [
        (row["action_ref"], row["group"], row["queue_length"]) for row in listing if row["group"] != "default"
    ]
    # Deepest first.
    assert listed[0] == ("ops.deploy", WEB1, 2)
    assert set(listed[1:]) == {("ops.deploy", NO_HOST, 0), ("ops.deploy", WEB2, 0)}
    assert (one["queue_length"], one["active_count"], one["max_concurrent"]) == (2, 3, 1)
    assert (one["total_enqueued"], one["total_completed"], one["total_terminal"]) == (6, 1, 1)
    assert {group["group"] for group in one["groups"]} >= set(EXPECTED)
    assert (
        one["oldest_enqueued_at"]
        == next(g for g in one["groups"] if g["group"] == WEB1)["oldest_enqueued_at"]
    )


def test_the_command_prints_a_line_per_group(per_host: Any) -> None:
    out = io.StringIO()

    call_command("queue_stats", "--active", stdout=out)

    lines = [tuple(line.split()[:4]) for line in out.getvalue().splitlines()[1:]]
    assert lines[0] == ("ops.deploy", WEB1, "2", "1")
    assert set(lines[1:]) == {("ops.deploy", NO_HOST, "0", "1"), ("ops.deploy", WEB2, "0", "1")}


def test_the_dashboard_lists_the_groups_under_the_action(per_host: Any) -> None:
    (row,) = [q for q in overview()["queues"] if q["action"] == per_host.ref]

    assert (row["waiting"], row["active"]) == (2, 3)
    groups = {g["group"]: (g["waiting"], g["active"]) for g in row["groups"]}
    assert groups == {WEB1: (2, 1), WEB2: (0, 1), NO_HOST: (0, 1), "default": (0, 0)}
    assert row["groups"][0]["group"] == WEB1  # busiest first


def test_the_dashboard_adds_up_groups_past_its_cap(per_host: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard_services, "MAX_GROUPS_LISTED", 2)

    (row,) = [q for q in overview()["queues"] if q["action"] == per_host.ref]

    # web-1, then one of the two groups with one running; the other and the
    # idle default group are "other".
    assert row["groups"][0]["group"] == WEB1
    assert row["groups"][1]["group"] in (WEB2, NO_HOST)
    assert row["groups"][2] == {"group": OTHER_GROUP, "waiting": 0, "active": 1, "oldest_age_seconds": None}
