"""The live queue dashboard's page and JSON endpoints, through Django's test
client. alice is staff, bob is a user without staff rights, anonymous is
nobody. The browser test (tests/acceptance/test_dashboard_browser.py)
drives the same page in Chromium."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from executions.models import Execution, ExecutionStatus
from executions.services import request_execution
from queues.gate import get_gate
from queues.keys import QueueRef
from queues.live import live_queues

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus


@pytest.fixture
def alice() -> Client:
    User.objects.create_user("alice", password="alice-password", is_staff=True)
    client = Client(enforce_csrf_checks=True)
    client.login(username="alice", password="alice-password")
    return client


@pytest.fixture
def bob() -> Client:
    User.objects.create_user("bob", password="bob-password")
    client = Client(enforce_csrf_checks=True)
    client.login(username="bob", password="bob-password")
    return client


def csrf_post(client: Client, url: str) -> Any:
    client.get("/dashboard/")  # sets the CSRF cookie, as the page does for its script
    return client.post(url, HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)


def test_it_sends_anonymous_visitors_to_the_admin_login() -> None:
    response = Client().get("/dashboard/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/dashboard/"


def test_it_refuses_the_json_endpoints_without_staff_rights(bob: Client) -> None:
    for client in (Client(), bob):
        response = client.get("/dashboard/api/queues")
        assert response.status_code == 403
        assert response.json()["error"]["code"] in {"not_authenticated", "permission_denied"}
    assert bob.get("/dashboard/").status_code == 302


def test_it_renders_every_queue_on_the_page(alice: Client, make_action: Any, redis_db: Any) -> None:
    action = make_action("shown", concurrency_limit=1)
    for _ in range(3):
        request_execution(action.ref, {})

    response = alice.get("/dashboard/")

    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-action="{action.ref}"' in html
    assert '<td class="num" data-field="waiting">2</td>' in html
    assert "queues/dashboard.js" in html


def test_it_serves_the_live_figures_of_every_queue(alice: Client, make_action: Any, redis_db: Any) -> None:
    busy = make_action("busy", concurrency_limit=2)
    idle = make_action("idle")
    for _ in range(5):
        request_execution(busy.ref, {})

    body = alice.get("/dashboard/api/queues").json()

    rows = {row["action"]: row for row in body["queues"]}
    live = {q.action_ref: q for q in live_queues()}
    assert set(rows) == set(live) == {busy.ref, idle.ref}
    for ref, row in rows.items():
        assert (row["waiting"], row["active"], row["limit"]) == (
            live[ref].queue_length,
            live[ref].active_count,
            live[ref].max_concurrent,
        )
    assert (rows[busy.ref]["waiting"], rows[busy.ref]["active"], rows[busy.ref]["limit"]) == (3, 2, 2)
    assert rows[busy.ref]["oldest_age_seconds"] >= 0
    assert rows[idle.ref]["limit"] is None and rows[idle.ref]["oldest_age_seconds"] is None


def test_it_counts_what_ended_in_the_last_minute(alice: Client, make_action: Any, redis_db: Any) -> None:
    action = make_action("ending", concurrency_limit=1)
    ids = [request_execution(action.ref, {}).pk for _ in range(4)]
    for execution_id in ids[2:]:
        csrf_post(alice, f"/dashboard/api/executions/{execution_id}/cancel")

    (row,) = [r for r in alice.get("/dashboard/api/queues").json()["queues"] if r["action"] == action.ref]

    assert row["throughput_per_minute"] == 2
    assert row["ended_last_minute"] == {"cancelled": 2}


def test_it_lists_the_waiting_executions_in_queue_order_with_their_positions(
    alice: Client, make_action: Any, redis_db: Any
) -> None:
    action = make_action("ordered", concurrency_limit=1)
    ids = [str(request_execution(action.ref, {"n": n}).pk) for n in range(5)]

    body = alice.get(f"/dashboard/api/queues/{action.ref}").json()

    assert body["waiting_total"] == 4
    assert [row["id"] for row in body["waiting"]] == ids[1:]
    assert [row["position"] for row in body["waiting"]] == [1, 2, 3, 4]
    queue = QueueRef(action.pk)
    assert [get_gate().position(queue, row["id"]) for row in body["waiting"]] == [1, 2, 3, 4]
    assert [row["parameters"] for row in body["waiting"]] == [{"n": n} for n in range(1, 5)]
    assert [row["id"] for row in body["active"]] == [ids[0]]
    assert body["active"][0]["status"] == S.SCHEDULED


def test_it_answers_404_for_an_unknown_action(alice: Client) -> None:
    response = alice.get("/dashboard/api/queues/nope.nothing")
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "action_not_found",
        "message": "Action 'nope.nothing' not found",
    }


def test_it_cancels_a_waiting_execution_and_the_others_move_up(
    alice: Client, make_action: Any, redis_db: Any
) -> None:
    action = make_action("cancelled_here", concurrency_limit=1)
    ids = [str(request_execution(action.ref, {}).pk) for _ in range(4)]

    response = csrf_post(alice, f"/dashboard/api/executions/{ids[2]}/cancel")

    assert response.status_code == 200
    assert response.json() == {"id": ids[2], "status": "cancelled", "action": action.ref}
    assert Execution.objects.get(pk=ids[2]).status == S.CANCELLED
    body = alice.get(f"/dashboard/api/queues/{action.ref}").json()
    assert [(row["position"], row["id"]) for row in body["waiting"]] == [(1, ids[1]), (2, ids[3])]


def test_it_refuses_a_cancel_without_the_csrf_token(alice: Client, make_action: Any, redis_db: Any) -> None:
    action = make_action("forged", concurrency_limit=1)
    request_execution(action.ref, {})
    waiting = request_execution(action.ref, {})

    response = alice.post(f"/dashboard/api/executions/{waiting.pk}/cancel")

    assert response.status_code == 403
    assert Execution.objects.get(pk=waiting.pk).status == S.QUEUED


def test_it_explains_a_cancel_that_cannot_happen(alice: Client, make_action: Any, redis_db: Any) -> None:
    action = make_action("twice", concurrency_limit=1)
    request_execution(action.ref, {})
    waiting = request_execution(action.ref, {})
    csrf_post(alice, f"/dashboard/api/executions/{waiting.pk}/cancel")

    again = csrf_post(alice, f"/dashboard/api/executions/{waiting.pk}/cancel")
    unknown = csrf_post(alice, "/dashboard/api/executions/not-an-id/cancel")
    by_get = alice.get(f"/dashboard/api/executions/{waiting.pk}/cancel")

    assert again.status_code == 409
    assert again.json()["error"] == {
        "code": "already_terminal",
        "message": f"Execution '{waiting.pk}' has already ended with status 'cancelled'",
    }
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "execution_not_found"
    assert by_get.status_code == 405


def test_it_refuses_a_cancel_from_a_user_without_staff_rights(
    bob: Client, make_action: Any, redis_db: Any
) -> None:
    action = make_action("guarded", concurrency_limit=1)
    request_execution(action.ref, {})
    waiting = request_execution(action.ref, {})
    bob.get("/admin/login/")  # any page that sets the CSRF cookie

    response = bob.post(
        f"/dashboard/api/executions/{waiting.pk}/cancel", HTTP_X_CSRFTOKEN=bob.cookies["csrftoken"].value
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert Execution.objects.get(pk=waiting.pk).status == S.QUEUED
