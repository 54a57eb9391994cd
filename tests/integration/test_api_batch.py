"""POST /api/v1/executions with a list: one batch, one transaction, one gate
step, FIFO in list order, all or nothing."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from executions.models import Execution, ExecutionStatus
from executions.services import MAX_BATCH
from tests.drive import end

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus
URL = "/api/v1/executions"


@pytest.fixture
def limited(make_action: Any, redis_db: Any) -> Any:
    return make_action(
        "batched",
        concurrency_limit=2,
        max_queue_length=5,
        parameters_schema={
            "type": "object",
            "properties": {"n": {"type": "integer"}},
            "additionalProperties": False,
        },
    )


def batch(client: APIClient, items: list[Any]) -> Any:
    return client.post(URL, items, format="json")


def test_it_admits_a_batch_in_list_order(bob: APIClient, limited: Any) -> None:
    response = batch(bob, [{"action": limited.ref, "parameters": {"n": i}} for i in range(5)])

    assert response.status_code == 201
    body = response.json()
    assert [item["parameters"]["n"] for item in body] == [0, 1, 2, 3, 4]
    assert [item["status"] for item in body] == [S.SCHEDULED] * 2 + [S.QUEUED] * 3
    assert [item["queue_seq"] for item in body] == [1, 2, 3, 4, 5]
    # Grants go on in list order as slots free.
    end(body[0]["id"])
    assert Execution.objects.get(pk=body[2]["id"]).status == S.SCHEDULED
    assert Execution.objects.get(pk=body[3]["id"]).status == S.QUEUED


def test_it_queues_a_later_single_request_behind_the_batch(bob: APIClient, limited: Any) -> None:
    batch(bob, [{"action": limited.ref}] * 3)

    single = bob.post(URL, {"action": limited.ref}, format="json").json()

    assert (single["status"], single["queue_seq"], single["queue_position"]) == (S.QUEUED, 4, 2)


def test_it_answers_400_naming_the_item_and_writes_nothing(bob: APIClient, limited: Any) -> None:
    items = [
        {"action": limited.ref, "parameters": {"n": 1}},
        {"action": limited.ref, "parameters": {"n": "x"}},
    ]

    response = batch(bob, items)

    assert response.status_code == 400
    assert response.json()["error"] == "parameters[1].n: 'x' is not of type 'integer'"
    assert response.json()["field"] == "parameters[1].n"
    assert not Execution.objects.exists()


def test_it_answers_400_for_an_item_that_is_not_an_object(bob: APIClient, limited: Any) -> None:
    response = batch(bob, [{"action": limited.ref}, 7])

    assert response.status_code == 400
    assert response.json()["error"].startswith("[1]: Invalid data. Expected a dictionary")
    assert not Execution.objects.exists()


def test_it_answers_400_for_a_batch_of_several_actions(
    bob: APIClient, limited: Any, make_action: Any
) -> None:
    other = make_action("other")

    response = batch(bob, [{"action": limited.ref}, {"action": other.ref}])

    assert response.status_code == 400
    assert response.json()["error"] == (
        f"action: A batch must request one action; this one names {limited.ref}, {other.ref}"
    )
    assert not Execution.objects.exists()


def test_it_answers_400_for_an_empty_or_oversized_batch(bob: APIClient, limited: Any) -> None:
    empty = batch(bob, [])
    oversized = batch(bob, [{"action": limited.ref}] * (MAX_BATCH + 1))

    assert empty.status_code == 400
    assert empty.json()["error"] == "at least one execution must be requested"
    assert oversized.status_code == 400
    assert f"no more than {MAX_BATCH}" in oversized.json()["error"]
    assert not Execution.objects.exists()


def test_it_answers_429_for_a_batch_whose_waiters_do_not_fit_and_writes_nothing(
    bob: APIClient, limited: Any
) -> None:
    batch(bob, [{"action": limited.ref}] * 4)  # 2 running, 2 waiting of 5

    response = batch(bob, [{"action": limited.ref}] * 4)

    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert response.json()["error"] == (
        f"Queue for action '{limited.ref}' is full: 2 executions are waiting and its "
        "max_queue_length is 5; none of the 4 requested were admitted."
    )
    assert Execution.objects.count() == 4
    # What fits still goes in.
    assert batch(bob, [{"action": limited.ref}] * 3).status_code == 201


def test_it_answers_404_for_an_unknown_action_in_a_batch(bob: APIClient, redis_db: Any) -> None:
    response = batch(bob, [{"action": "nope.missing"}])

    assert response.status_code == 404
    assert response.json() == {"error": "Action 'nope.missing' not found"}
