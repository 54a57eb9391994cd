"""/api/v1/actions/{ref}/queue-stats, /api/v1/queue-stats and
/api/v1/actions/{ref}/purge: the persisted statistics as clients see them,
and the staff-only purge."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from executions.models import Execution, ExecutionStatus
from executions.services import request_execution
from queues.models import QueueStats
from queues.stats import flush_once
from tests.drive import end

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus


def test_it_serves_one_actions_statistics_as_the_flusher_wrote_them(
    bob: APIClient, make_action: Any, redis_db: Any
) -> None:
    action = make_action("busy", concurrency_limit=2)
    ids = [request_execution(action.ref).pk for _ in range(5)]
    end(ids[0])
    end(ids[1], S.FAILED)
    flush_once()
    row = QueueStats.objects.get(action=action)

    response = bob.get(f"/api/v1/actions/{action.ref}/queue-stats")

    assert response.status_code == 200
    data = response.json()["data"]
    assert set(data) == {
        "action_id",
        "action_ref",
        "queue_length",
        "active_count",
        "max_concurrent",
        "oldest_enqueued_at",
        "total_enqueued",
        "total_completed",
        "total_terminal",
        "last_updated",
        "groups",
    }
    assert [group["group"] for group in data["groups"]] == ["default"]
    assert {key: data["groups"][0][key] for key in data if key != "groups"} == {
        key: data[key] for key in data if key != "groups"
    }
    totals = {key: data[key] for key in data if key not in ("oldest_enqueued_at", "last_updated", "groups")}
    assert totals == {
        "action_id": action.pk,
        "action_ref": "test.busy",
        "queue_length": 1,
        "active_count": 2,
        "max_concurrent": 2,
        "total_enqueued": 5,
        "total_completed": 1,
        "total_terminal": 2,
    }
    assert data["oldest_enqueued_at"] is not None
    assert data["last_updated"] == row.last_updated.isoformat().replace("+00:00", "Z")


def test_it_answers_404_for_an_unknown_action(bob: APIClient) -> None:
    response = bob.get("/api/v1/actions/nope.gone/queue-stats")

    assert response.status_code == 404
    assert response.json() == {"error": "Action 'nope.gone' not found"}


def test_it_answers_404_for_an_action_whose_queue_was_never_used(bob: APIClient, make_action: Any) -> None:
    make_action("unused")

    response = bob.get("/api/v1/actions/test.unused/queue-stats")

    assert response.status_code == 404
    assert response.json() == {"error": "No queue statistics available for action 'test.unused'"}


@pytest.fixture
def three_queues(make_action: Any) -> dict[str, Any]:
    now = timezone.now()
    shallow, deep, idle = (make_action(name) for name in ("shallow", "deep", "idle"))
    QueueStats.objects.upsert(shallow, queue_length=2, active_count=1, last_updated=now)
    QueueStats.objects.upsert(deep, queue_length=40, active_count=3, last_updated=now)
    QueueStats.objects.upsert(idle, total_enqueued=9, total_completed=9, total_terminal=9, last_updated=now)
    return {"shallow": shallow, "deep": deep, "idle": idle}


def test_it_lists_every_queue_deepest_first(bob: APIClient, three_queues: Any) -> None:
    response = bob.get("/api/v1/queue-stats")

    assert response.status_code == 200
    assert [row["action_ref"] for row in response.json()["data"]] == [
        "test.deep",
        "test.shallow",
        "test.idle",
    ]


def test_it_lists_only_busy_queues_when_asked(bob: APIClient, three_queues: Any) -> None:
    active = bob.get("/api/v1/queue-stats", {"active": "true"}).json()["data"]
    everything = bob.get("/api/v1/queue-stats", {"active": "false"}).json()["data"]

    assert [row["action_ref"] for row in active] == ["test.deep", "test.shallow"]
    assert len(everything) == 3


def test_it_answers_400_for_an_active_flag_it_cannot_read(bob: APIClient, three_queues: Any) -> None:
    response = bob.get("/api/v1/queue-stats", {"active": "maybe"})

    assert response.status_code == 400
    assert response.json()["error"] == "active: must be true or false, got 'maybe'"


def test_it_purges_the_waiting_executions_and_leaves_the_running_one(
    alice: APIClient, make_action: Any, redis_db: Any
) -> None:
    action = make_action("purged", concurrency_limit=1)
    running, *waiting = (request_execution(action.ref).pk for _ in range(4))

    response = alice.post(f"/api/v1/actions/{action.ref}/purge")

    assert response.status_code == 200
    assert response.json() == {
        "data": {"action_ref": "test.purged", "cancelled": [str(pk) for pk in waiting], "skipped": []}
    }
    statuses = dict(Execution.objects.values_list("pk", "status"))
    assert statuses[running] == S.SCHEDULED
    assert all(statuses[pk] == S.CANCELLED for pk in waiting)
    assert all(
        "was purged" in error
        for error in Execution.objects.filter(pk__in=waiting).values_list("error", flat=True)
    )
    flush_once()
    row = QueueStats.objects.get(action=action)
    assert (row.queue_length, row.active_count, row.total_terminal) == (0, 1, 3)


def test_it_answers_404_when_purging_an_unknown_action(alice: APIClient) -> None:
    response = alice.post("/api/v1/actions/nope.gone/purge")

    assert response.status_code == 404
    assert response.json() == {"error": "Action 'nope.gone' not found"}
