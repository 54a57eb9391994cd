"""The Django admin as staff use it: every page renders, executions and
statistics are read-only, and "cancel selected" cancels through the
service and reports on each execution."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from executions.models import Action, Execution, ExecutionStatus
from executions.services import request_execution
from queues.models import QueueStats
from tests.helpers import action_admin_form
from workers.models import Worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus


@pytest.fixture
def alice(db: None) -> Client:
    """Staff with every admin permission."""
    User.objects.create_superuser("alice", password="alice-password")
    client = Client()
    assert client.login(username="alice", password="alice-password")
    return client


@pytest.fixture
def bob(db: None) -> Client:
    """A user without staff rights: the admin is closed to him."""
    User.objects.create_user("bob", password="bob-password")
    client = Client()
    assert client.login(username="bob", password="bob-password")
    return client


@pytest.fixture
def waiting(make_action: Any, redis_db: Any) -> list[Execution]:
    action = make_action("admin_seen", concurrency_limit=1)
    return [request_execution(action.ref) for _ in range(3)]


def test_it_renders_every_list_and_the_detail_pages(alice: Client, core_pack: Any, waiting: Any) -> None:
    from django.utils import timezone

    Worker.objects.create(hostname="w1@host", started=timezone.now(), last_heartbeat=timezone.now())
    QueueStats.objects.upsert(waiting[0].action, queue_length=2, active_count=1)
    pages = [
        "/admin/",
        "/admin/executions/pack/",
        "/admin/executions/action/",
        "/admin/executions/execution/",
        "/admin/queues/queuestats/",
        "/admin/workers/worker/",
        f"/admin/executions/action/{Action.objects.get(ref='core.sleep').pk}/change/",
        f"/admin/executions/execution/{waiting[1].pk}/change/",
        f"/admin/queues/queuestats/{QueueStats.objects.get(action=waiting[0].action).pk}/change/",
        "/admin/executions/action/add/",
    ]
    for page in pages:
        assert alice.get(page).status_code == 200, page


def test_it_keeps_the_admin_closed_to_users_without_staff_rights(bob: Client) -> None:
    response = bob.get("/admin/executions/execution/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_it_finds_an_execution_by_its_id_and_filters_by_status(alice: Client, waiting: Any) -> None:
    wanted = waiting[2]

    found = alice.get("/admin/executions/execution/", {"q": str(wanted.pk)})
    queued = alice.get("/admin/executions/execution/", {"status__exact": S.QUEUED})
    by_action = alice.get("/admin/executions/execution/", {"action__id__exact": wanted.action_id})
    malformed = alice.get("/admin/executions/execution/", {"q": "not-a-uuid"})

    assert list(found.context["cl"].result_list) == [wanted]
    assert {e.pk for e in queued.context["cl"].result_list} == {waiting[1].pk, waiting[2].pk}
    assert len(by_action.context["cl"].result_list) == 3
    assert malformed.status_code == 200
    assert list(malformed.context["cl"].result_list) == []


def test_it_shows_executions_read_only(alice: Client, waiting: Any) -> None:
    execution = waiting[1]

    add = alice.get("/admin/executions/execution/add/")
    change = alice.post(f"/admin/executions/execution/{execution.pk}/change/", {"status": S.COMPLETED})
    delete = alice.get(f"/admin/executions/execution/{execution.pk}/delete/")

    assert add.status_code == 403
    assert change.status_code == 403
    assert delete.status_code == 403
    assert Execution.objects.get(pk=execution.pk).status == S.QUEUED


def test_it_cancels_selected_executions_and_reports_each(alice: Client, waiting: Any) -> None:
    running, queued, _ = waiting
    finished = request_execution("test.admin_seen")
    Execution.objects.filter(pk=finished.pk).update(status=S.COMPLETED)

    response = alice.post(
        "/admin/executions/execution/",
        {
            "action": "cancel_selected",
            "_selected_action": [str(running.pk), str(queued.pk), str(finished.pk)],
        },
        follow=True,
    )

    assert response.status_code == 200
    texts = {str(message) for message in response.context["messages"]}
    assert texts == {
        f"Execution '{running.pk}' is being cancelled (its worker stops it)",
        f"Execution '{queued.pk}' cancelled",
        f"Execution '{finished.pk}' has already ended with status 'completed'",
    }
    statuses = dict(Execution.objects.values_list("pk", "status"))
    assert (statuses[running.pk], statuses[queued.pk]) == (S.CANCELING, S.CANCELLED)


def test_it_lists_queue_statistics_busiest_first_and_read_only(alice: Client, make_action: Any) -> None:
    for name, depth in (("b_low", 1), ("c_high", 30), ("a_none", 0)):
        QueueStats.objects.upsert(make_action(name), queue_length=depth)

    listing = alice.get("/admin/queues/queuestats/")
    busy = alice.get("/admin/queues/queuestats/", {"busy": "yes"})
    # Column 2 of list_display: queue_length, ascending.
    shallowest = alice.get("/admin/queues/queuestats/", {"o": "2"})
    add = alice.get("/admin/queues/queuestats/add/")

    def refs(response: Any) -> list[str]:
        return [row.action.ref for row in response.context["cl"].result_list]

    assert refs(listing) == ["test.c_high", "test.b_low", "test.a_none"]
    assert refs(busy) == ["test.c_high", "test.b_low"]
    assert refs(shallowest) == ["test.a_none", "test.b_low", "test.c_high"]
    assert add.status_code == 403


def test_it_applies_a_limit_changed_in_the_admin_at_once(alice: Client, waiting: Any) -> None:
    action = waiting[0].action
    form = action_admin_form(action, concurrency_limit=3)

    response = alice.post(f"/admin/executions/action/{action.pk}/change/", form)

    assert response.status_code == 302, response.content[:2000]
    assert Execution.objects.filter(action=action, status=S.SCHEDULED).count() == 3


def test_it_refuses_an_invalid_parameters_schema_in_the_admin(alice: Client, waiting: Any) -> None:
    action = waiting[0].action
    form = {
        "runner": "python",
        "entrypoint": action.entrypoint,
        "parameters_schema": '{"type": 5}',
        "timeout_seconds": 600,
        "celery_queue": "default",
        "max_queue_length": 10000,
        "queue_timeout_seconds": 3600,
    }

    response = alice.post(f"/admin/executions/action/{action.pk}/change/", form)

    assert response.status_code == 200
    assert "Not a valid JSON schema" in response.content.decode()
