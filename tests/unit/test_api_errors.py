"""How service errors and validation errors become API responses."""

from __future__ import annotations

import pytest
from django.core.exceptions import RequestDataTooBig
from django.db import DataError, IntegrityError, OperationalError
from django.test import RequestFactory
from redis.exceptions import ClusterDownError, RedisClusterException, SlotNotCoveredError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from rest_framework.exceptions import ValidationError

from attune.api_errors import _summary, bad_request, csrf_failure, exception_handler
from executions.exceptions import (
    ActionDisabled,
    ActionNotFound,
    AlreadyExists,
    AlreadyTerminal,
    AttuneError,
    ExecutionNotFound,
    ImmutableField,
    InvalidParameters,
    PackNotFound,
    QueueFull,
)
from queues.exceptions import QueueStatsNotFound


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ActionNotFound("Action 'x' not found"), 404),
        (ExecutionNotFound("Execution 'y' not found"), 404),
        (QueueStatsNotFound("No queue statistics available for action 'x'"), 404),
        (PackNotFound("Pack 'x' not found"), 404),
        (ActionDisabled("Action 'x' is disabled"), 409),
        (AlreadyTerminal("Execution 'y' has already ended"), 409),
        (AlreadyExists("Pack 'x' already exists"), 409),
        (AttuneError("anything else the services refuse"), 400),
    ],
)
def test_it_maps_each_service_error_to_its_status_with_its_message(error: AttuneError, status: int) -> None:
    response = exception_handler(error, {})

    assert response is not None
    assert response.status_code == status
    assert response.data == {"error": str(error)}


def test_it_names_the_field_of_invalid_parameters() -> None:
    response = exception_handler(InvalidParameters("parameters.n: bad", field="parameters.n"), {})

    assert response is not None
    assert (response.status_code, response.data) == (
        400,
        {"error": "parameters.n: bad", "field": "parameters.n"},
    )


def test_it_answers_409_naming_a_field_that_cannot_change() -> None:
    response = exception_handler(ImmutableField("name: Cannot be changed", field="name"), {})

    assert response is not None
    assert (response.status_code, response.data) == (
        409,
        {"error": "name: Cannot be changed", "field": "name"},
    )


def test_it_answers_a_full_queue_with_429_and_retry_after() -> None:
    full = QueueFull("Queue for action 'a.b' is full", action_ref="a.b", limit=10, retry_after_seconds=7)

    response = exception_handler(full, {})

    assert response is not None
    assert (response.status_code, response["Retry-After"]) == (429, "7")


def test_it_answers_503_when_a_backing_store_is_down() -> None:
    response = exception_handler(RedisConnectionError("refused"), {})

    assert response is not None
    assert response.status_code == 503
    assert response["Retry-After"] == "5"


@pytest.mark.parametrize(
    "error",
    [
        ClusterDownError("The cluster is down"),
        TryAgainError("slot migrating"),
        SlotNotCoveredError("no node"),
        RedisClusterException(
            "Redis Cluster cannot be connected. Please provide at least one reachable node"
        ),
    ],
    ids=lambda error: type(error).__name__,
)
def test_it_answers_503_when_a_cluster_primary_is_away(error: Exception) -> None:
    # A ResponseError to redis-py, but an outage, not a bad command: a
    # primary failed and its slots wait for it (or a replica) to answer.
    response = exception_handler(error, {})

    assert response is not None
    assert (response.status_code, response["Retry-After"]) == (503, "5")


def test_it_answers_503_when_the_database_is_down() -> None:
    response = exception_handler(OperationalError("server closed the connection unexpectedly"), {})

    assert response is not None
    assert (response.status_code, response["Retry-After"]) == (503, "5")


def test_it_answers_400_for_a_value_the_database_refuses() -> None:
    # Bad input, not an outage: retrying it after Retry-After would fail the same way.
    response = exception_handler(DataError("integer out of range\n"), {})

    assert response is not None
    assert response.status_code == 400
    assert response.data == {
        "error": "The database cannot store a value of this request: integer out of range"
    }
    assert "Retry-After" not in response


def test_it_answers_409_when_a_constraint_lost_a_race() -> None:
    response = exception_handler(IntegrityError("duplicate key value violates unique constraint"), {})

    assert response is not None
    assert response.status_code == 409
    assert response.data["error"].startswith("The request conflicts with a change made meanwhile")


def test_it_answers_413_when_django_found_the_body_too_large() -> None:
    response = exception_handler(
        RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE."), {}
    )

    assert response is not None
    assert response.status_code == 413
    assert response.data == {"error": "Request body too large: at most 2621440 bytes are accepted"}


def test_a_request_django_refuses_under_the_api_is_json() -> None:
    factory = RequestFactory()

    too_big = bad_request(factory.post("/api/v1/executions"), RequestDataTooBig("too big"))
    other = bad_request(factory.get("/api/v1/packs"), ValueError("anything"))
    outside = bad_request(factory.get("/admin/"), ValueError("anything"))

    assert (too_big.status_code, too_big["Content-Type"]) == (413, "application/json")
    assert b"Request body too large" in too_big.content
    assert (other.status_code, other.content) == (400, b'{"error": "Bad request"}')
    assert (outside.status_code, outside["Content-Type"].startswith("text/html")) == (400, True)


def test_a_csrf_refusal_under_the_api_is_json() -> None:
    factory = RequestFactory()

    api = csrf_failure(factory.post("/api/v1/nope"), "CSRF cookie not set.")
    outside = csrf_failure(factory.post("/admin/login/"), "CSRF cookie not set.")

    assert (api.status_code, api["Content-Type"]) == (403, "application/json")
    assert api.content == b'{"error": "CSRF check failed: CSRF cookie not set."}'
    assert (outside.status_code, outside["Content-Type"].startswith("text/html")) == (403, True)


def test_it_leaves_unknown_exceptions_to_django() -> None:
    assert exception_handler(KeyError("bug"), {}) is None


def test_it_summarises_a_validation_error_by_its_first_field() -> None:
    response = exception_handler(ValidationError({"name": ["Bad name."], "pack": ["Missing."]}), {})

    assert response is not None
    assert response.data["error"] == "name: Bad name."
    assert response.data["detail"] == {"name": ["Bad name."], "pack": ["Missing."]}


@pytest.mark.parametrize(
    ("data", "summary"),
    [
        (
            {"non_field_errors": ["The fields pack, name must make a unique set."]},
            "The fields pack, name must make a unique set.",
        ),
        ({"parameters": {"url": ["Required."]}}, "parameters.url: Required."),
        (["Expected a dictionary."], "Expected a dictionary."),
        ({}, "Invalid request"),
    ],
)
def test_it_finds_the_first_problem_however_deep(data: object, summary: str) -> None:
    assert _summary(data) == summary
