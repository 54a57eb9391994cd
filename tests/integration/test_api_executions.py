"""/api/v1/executions through the real HTTP stack: requesting, listing,
reading (with the place in line), cancelling, and every error a client can
cause. bob, a plain user, is the client throughout: executions are for
everyone. The gate is the real Redis one, so the tests commit (transaction=True)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from executions.models import Execution, ExecutionStatus
from tests.drive import end, scheduled_ids

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus
URL = "/api/v1/executions"


@pytest.fixture
def limited(make_action: Any, redis_db: Any) -> Any:
    """An action that runs one at a time, with a parameter schema."""
    return make_action(
        "limited",
        concurrency_limit=1,
        parameters_schema={
            "type": "object",
            "properties": {"n": {"type": "integer"}, "tag": {"type": "string"}},
            "additionalProperties": False,
        },
    )


def request(client: APIClient, action_ref: str, parameters: Any = None) -> Any:
    body: dict[str, Any] = {"action": action_ref}
    if parameters is not None:
        body["parameters"] = parameters
    return client.post(URL, body, format="json")


def test_it_answers_201_with_the_execution_it_scheduled(bob: APIClient, limited: Any) -> None:
    response = request(bob, limited.ref, {"n": 1})

    assert response.status_code == 201
    body = response.json()
    assert body["action"] == "test.limited"
    assert body["status"] == S.SCHEDULED
    assert body["parameters"] == {"n": 1}
    assert body["queue_seq"] == 1
    assert body["queue_position"] is None
    assert response["Location"] == f"{URL}/{body['id']}"
    assert Execution.objects.get(pk=body["id"]).status == S.SCHEDULED


def test_it_shows_a_waiting_executions_place_in_line(bob: APIClient, limited: Any) -> None:
    first, second, third = (request(bob, limited.ref, {"n": i}).json() for i in range(3))

    assert first["status"] == S.SCHEDULED
    assert (second["status"], second["queue_position"]) == (S.QUEUED, 1)
    assert (third["status"], third["queue_position"]) == (S.QUEUED, 2)
    # Nothing has finished yet, so there is no throughput to estimate from.
    assert third["estimated_wait_seconds"] is None

    end(first["id"])
    now_third = bob.get(f"{URL}/{third['id']}").json()
    assert now_third["queue_position"] == 1
    assert bob.get(f"{URL}/{second['id']}").json()["status"] == S.SCHEDULED


def test_it_estimates_the_wait_from_the_actions_recent_throughput(bob: APIClient, limited: Any) -> None:
    ids = [request(bob, limited.ref, {"n": i}).json()["id"] for i in range(6)]
    for execution_id in ids[:2]:
        end(execution_id)
    # Two finished over a known span: 2 per 10 s, so 5 s per place in line.
    ten_seconds_ago = timezone.now() - timedelta(seconds=10)
    Execution.objects.filter(pk=ids[0]).update(completed_at=ten_seconds_ago)

    last = bob.get(f"{URL}/{ids[5]}").json()

    assert last["queue_position"] == 3
    assert last["estimated_wait_seconds"] == pytest.approx(15.0, abs=0.5)
    running = bob.get(f"{URL}/{ids[2]}").json()
    assert running["queue_position"] is None and running["estimated_wait_seconds"] is None


def test_it_answers_400_naming_the_parameter_that_breaks_the_schema(bob: APIClient, limited: Any) -> None:
    response = request(bob, limited.ref, {"n": "three"})

    assert response.status_code == 400
    assert response.json() == {
        "error": "parameters.n: 'three' is not of type 'integer'",
        "field": "parameters.n",
    }
    assert not Execution.objects.exists()


def test_it_answers_400_for_an_unexpected_parameter(bob: APIClient, limited: Any) -> None:
    response = request(bob, limited.ref, {"colour": "red"})

    assert response.status_code == 400
    assert "colour" in response.json()["error"]


def test_it_answers_400_when_parameters_is_not_an_object(bob: APIClient, limited: Any) -> None:
    response = request(bob, limited.ref, [1, 2])

    assert response.status_code == 400
    assert response.json()["error"] == "parameters: Must be a JSON object."


def test_it_answers_400_when_the_action_is_missing_from_the_body(bob: APIClient, redis_db: Any) -> None:
    response = bob.post(URL, {"parameters": {}}, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == "action: This field is required."


def test_it_answers_400_for_malformed_json(bob: APIClient, limited: Any) -> None:
    response = bob.post(URL, '{"action": "test.limited",', content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"].startswith("JSON parse error")
    assert not Execution.objects.exists()


def test_it_answers_400_for_json_nested_absurdly_deep(bob: APIClient, limited: Any) -> None:
    response = bob.post(URL, "[" * 100_000 + "]" * 100_000, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {"error": "JSON parse error - the document is nested too deeply"}


def test_it_never_fetches_a_url_named_by_an_old_actions_schema(
    bob: APIClient, make_action: Any, redis_db: Any
) -> None:
    action = make_action("legacy")
    # Stored before definitions were checked: the model would refuse it now.
    schema = {"type": "object", "properties": {"x": {"$ref": "http://127.0.0.1:9/x.json"}}}
    type(action).objects.filter(pk=action.pk).update(parameters_schema=schema)

    with mock.patch("urllib.request.urlopen", autospec=True) as urlopen:
        response = request(bob, action.ref, {"x": 1})

    assert urlopen.call_count == 0
    assert response.status_code == 400
    assert response.json()["error"].startswith(
        "Action 'test.legacy' has a parameters_schema that cannot be used"
    )
    assert not Execution.objects.exists()


def test_it_answers_400_for_a_body_that_is_not_an_object(bob: APIClient, limited: Any) -> None:
    response = bob.post(URL, "[1, 2]", content_type="application/json")

    assert response.status_code == 400
    assert "Expected a dictionary" in response.json()["error"]


def test_it_answers_415_for_a_body_it_cannot_read(bob: APIClient, limited: Any) -> None:
    response = bob.post(URL, "action=x", content_type="text/plain")

    assert response.status_code == 415
    assert response.json()["error"] == 'Unsupported media type "text/plain" in request.'


def test_it_answers_404_for_an_unknown_action(bob: APIClient, redis_db: Any) -> None:
    response = request(bob, "nope.missing")

    assert response.status_code == 404
    assert response.json() == {"error": "Action 'nope.missing' not found"}


def test_it_answers_409_for_a_disabled_action(bob: APIClient, make_action: Any, redis_db: Any) -> None:
    action = make_action("off", enabled=False)

    response = request(bob, action.ref)

    assert response.status_code == 409
    assert response.json() == {"error": "Action 'test.off' is disabled"}


def test_it_answers_429_with_retry_after_when_the_queue_is_full(
    bob: APIClient, make_action: Any, redis_db: Any
) -> None:
    action = make_action("tight", concurrency_limit=1, max_queue_length=2)
    for _ in range(3):
        assert request(bob, action.ref).status_code == 201

    response = request(bob, action.ref)

    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert response.json() == {
        "error": "Queue for action 'test.tight' is full: 2 executions are waiting "
        "and its max_queue_length is 2."
    }
    # The refused request left nothing behind.
    assert Execution.objects.filter(action=action).count() == 3


def test_it_answers_202_when_the_queue_does_not_answer_and_admits_them_once_it_does(
    bob: APIClient, limited: Any
) -> None:
    """Recorded before their gate step: with Redis away they stay
    `requested`, the client is told so rather than to retry (a retry would
    make a second execution), and the reaper admits them in order later."""
    import redis
    from django.test import override_settings

    from queues.gate import Gate
    from queues.reaper import reap_once
    from tests.local_servers import free_port

    running = request(bob, limited.ref, {"n": 0}).json()
    nobody_there = Gate(redis.Redis(port=free_port(), socket_connect_timeout=1))
    with mock.patch("queues.dispatch.get_gate", return_value=nobody_there):
        one = request(bob, limited.ref, {"n": 1})
        batch = bob.post(
            URL, [{"action": limited.ref, "parameters": {"n": n}} for n in (2, 3)], format="json"
        )

    assert one.status_code == 202
    assert one.json()["status"] == S.REQUESTED
    assert one["Location"] == f"{URL}/{one.json()['id']}"
    assert batch.status_code == 202
    assert [item["status"] for item in batch.json()] == [S.REQUESTED, S.REQUESTED]
    ids = [one.json()["id"], *(item["id"] for item in batch.json())]
    assert Execution.objects.filter(action=limited).count() == 4

    # The gate answers again; the reaper's next pass admits them, in request
    # order, behind the one that got through before.
    time.sleep(0.3)
    with override_settings(ATTUNE_REAPER_INTERVAL_SECONDS=0.2):
        report = reap_once()
    by_id = {str(e.pk): e for e in Execution.objects.filter(action=limited)}

    assert report.stranded_admitted == 3
    assert by_id[running["id"]].status == S.SCHEDULED
    assert [by_id[pk].status for pk in ids] == [S.QUEUED, S.QUEUED, S.QUEUED]
    assert [by_id[pk].queue_seq for pk in ids] == [2, 3, 4]
    assert request(bob, limited.ref, {"n": 4}).status_code == 201


def test_a_grant_whose_message_the_broker_refused_is_answered_201_and_sent_again_later(
    bob: APIClient, limited: Any, redis_db: Any
) -> None:
    from kombu.exceptions import OperationalError

    from queues.keys import QueueRef
    from queues.reaper import reap_once

    with mock.patch("queues.dispatch._send_grants", side_effect=OperationalError("broker away")):
        response = request(bob, limited.ref, {"n": 1})
    execution_id = response.json()["id"]

    assert (response.status_code, response.json()["status"]) == (201, S.SCHEDULED)
    # Its lease runs out with no worker renewing it; the reaper sends it again.
    redis_db.zadd(QueueRef(limited.pk).active, {execution_id: 0}, xx=True)
    with mock.patch("queues.dispatch._send") as send:
        report = reap_once()

    assert report.requeued == 1
    assert [c.args[0] for c in send.call_args_list] == [execution_id]
    assert Execution.objects.get(pk=execution_id).status == S.SCHEDULED


def test_it_lists_executions_newest_first_with_pagination(bob: APIClient, limited: Any) -> None:
    ids = [request(bob, limited.ref, {"n": i}).json()["id"] for i in range(5)]

    page = bob.get(URL, {"limit": 2, "offset": 1}).json()

    assert page["count"] == 5
    assert [item["id"] for item in page["results"]] == [ids[3], ids[2]]
    assert page["next"] is not None and page["previous"] is not None
    assert "queue_position" not in page["results"][0]


def test_it_filters_executions_by_action_and_status(bob: APIClient, limited: Any, make_action: Any) -> None:
    other = make_action("other")
    waiting = [request(bob, limited.ref).json()["id"] for _ in range(3)][1:]
    request(bob, other.ref)

    by_action = bob.get(URL, {"action": limited.ref}).json()
    queued = bob.get(URL, {"action": limited.ref, "status": S.QUEUED}).json()
    both = bob.get(f"{URL}?status=queued&status=scheduled").json()

    assert by_action["count"] == 3
    assert sorted(item["id"] for item in queued["results"]) == sorted(waiting)
    assert both["count"] == 4


def test_it_filters_executions_by_creation_time(bob: APIClient, limited: Any) -> None:
    old, new = (request(bob, limited.ref).json()["id"] for _ in range(2))
    Execution.objects.filter(pk=old).update(created=timezone.now() - timedelta(days=2))
    yesterday = (timezone.now() - timedelta(days=1)).isoformat()

    after = bob.get(URL, {"created_after": yesterday}).json()
    before = bob.get(URL, {"created_before": yesterday}).json()

    assert [item["id"] for item in after["results"]] == [new]
    assert [item["id"] for item in before["results"]] == [old]


def test_it_answers_400_for_filters_it_cannot_read(bob: APIClient, limited: Any) -> None:
    bad_date = bob.get(URL, {"created_after": "yesterday"})
    bad_status = bob.get(URL, {"status": "sleeping"})

    assert bad_date.status_code == 400
    assert bad_date.json()["error"] == "created_after: Enter a valid date/time."
    assert bad_status.status_code == 400
    assert bad_status.json()["error"].startswith("status: Select a valid choice.")


def test_it_answers_404_for_an_unknown_or_malformed_execution_id(bob: APIClient, redis_db: Any) -> None:
    missing = "00000000-0000-0000-0000-000000000000"

    assert bob.get(f"{URL}/{missing}").json() == {"error": f"Execution '{missing}' not found"}
    assert bob.get(f"{URL}/{missing}").status_code == 404
    assert bob.get(f"{URL}/not-a-uuid").status_code == 404
    assert bob.post(f"{URL}/not-a-uuid/cancel").status_code == 404


def test_it_cancels_a_waiting_execution_and_the_rest_keep_their_order(bob: APIClient, limited: Any) -> None:
    ids = [request(bob, limited.ref, {"n": i}).json()["id"] for i in range(4)]

    response = bob.post(f"{URL}/{ids[1]}/cancel")

    assert response.status_code == 200
    assert response.json()["status"] == S.CANCELLED
    assert response.json()["queue_position"] is None
    assert [bob.get(f"{URL}/{i}").json()["queue_position"] for i in ids[2:]] == [1, 2]


def test_it_puts_a_running_execution_into_canceling(bob: APIClient, limited: Any) -> None:
    execution_id = request(bob, limited.ref).json()["id"]

    response = bob.post(f"{URL}/{execution_id}/cancel")

    assert response.status_code == 200
    assert response.json()["status"] == S.CANCELING
    # Asking again while its worker stops it is not an error.
    assert bob.post(f"{URL}/{execution_id}/cancel").json()["status"] == S.CANCELING


def test_it_answers_409_when_cancelling_an_execution_that_already_ended(bob: APIClient, limited: Any) -> None:
    execution_id = request(bob, limited.ref).json()["id"]
    end(execution_id, S.FAILED)

    response = bob.post(f"{URL}/{execution_id}/cancel")

    assert response.status_code == 409
    assert response.json() == {"error": f"Execution '{execution_id}' has already ended with status 'failed'"}


def test_it_answers_405_in_json_for_a_method_it_does_not_offer(bob: APIClient, limited: Any) -> None:
    execution_id = request(bob, limited.ref).json()["id"]

    response = bob.delete(f"{URL}/{execution_id}")

    assert response.status_code == 405
    assert response.json() == {"error": 'Method "DELETE" not allowed.'}
    assert scheduled_ids(limited.pk) == [execution_id]
