"""/api/v1/packs and /api/v1/actions: reading as bob, defining as alice
(staff). Who may do what is in test_api_permissions.py."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from executions.models import Action, Execution, ExecutionStatus, Pack

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
S = ExecutionStatus

NEW_ACTION = {
    "pack": "core",
    "name": "hello",
    "runner": "python",
    "entrypoint": "workers.core_actions.echo",
    "parameters_schema": {"type": "object", "properties": {"message": {"type": "string"}}},
    "concurrency_limit": 2,
}


def test_it_lists_packs_and_reads_one_by_ref(bob: APIClient, core_pack: Any) -> None:
    listing = bob.get("/api/v1/packs").json()
    pack = bob.get("/api/v1/packs/core").json()

    # bob's fixture made the test pack to grant him its actions.
    assert [item["ref"] for item in listing["results"]] == ["core", "test"]
    assert pack == {
        "ref": "core",
        "label": "Core",
        "description": "Built-in actions shipped with Attune.",
        "concurrency_limit": None,
    }


def test_it_answers_404_for_an_unknown_pack(bob: APIClient) -> None:
    response = bob.get("/api/v1/packs/nope")

    assert response.status_code == 404
    assert response.json() == {"error": "Pack 'nope' not found"}


def test_it_creates_a_pack(alice: APIClient) -> None:
    response = alice.post(
        "/api/v1/packs", {"ref": "ops", "label": "Ops", "concurrency_limit": 4}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["ref"] == "ops"
    assert Pack.objects.get(ref="ops").concurrency_limit == 4


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"ref": "Not Valid"}, "ref: A pack ref may hold only lowercase letters, digits and '_'."),
        (
            {"ref": "ops", "concurrency_limit": 0},
            "concurrency_limit: Ensure this value is greater than or equal to 1.",
        ),
        ({"label": "no ref"}, "ref: This field is required."),
    ],
)
def test_it_refuses_an_invalid_pack_naming_the_field(
    alice: APIClient, core_pack: Any, body: dict[str, Any], error: str
) -> None:
    response = alice.post("/api/v1/packs", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == error
    assert list(Pack.objects.values_list("ref", flat=True)) == ["core"]


def test_it_answers_409_for_a_pack_ref_already_taken(alice: APIClient, core_pack: Any) -> None:
    response = alice.post("/api/v1/packs", {"ref": "core", "label": "Again"}, format="json")

    assert response.status_code == 409
    assert response.json() == {"error": "Pack 'core' already exists"}
    assert Pack.objects.get().label == "Core"


def test_it_updates_a_pack_but_never_its_ref(alice: APIClient, core_pack: Any) -> None:
    changed = alice.patch("/api/v1/packs/core", {"label": "Core actions"}, format="json")
    renamed = alice.patch("/api/v1/packs/core", {"ref": "kernel"}, format="json")

    assert changed.status_code == 200
    assert changed.json()["label"] == "Core actions"
    # The ref is what the pack is; changing it conflicts with what exists.
    assert renamed.status_code == 409
    assert renamed.json() == {
        "error": "ref: Cannot be changed once created: it is part of the pack's ref 'core'.",
        "field": "ref",
    }
    assert Pack.objects.get().ref == "core"


def test_it_lists_actions_filtered_by_pack_and_reads_one_by_its_dotted_ref(
    bob: APIClient, core_pack: Any, make_action: Any
) -> None:
    make_action("elsewhere", pack="other")

    core = bob.get("/api/v1/actions", {"pack": "core"}).json()
    action = bob.get("/api/v1/actions/core.sleep").json()

    assert [item["ref"] for item in core["results"]] == [
        "core.echo",
        "core.fail",
        "core.http_request",
        "core.local",
        "core.noop",
        "core.sleep",
    ]
    assert action["ref"] == "core.sleep"
    assert action["pack"] == "core"
    assert action["concurrency_limit"] is None
    assert action["effective_concurrency_limit"] is None


def test_it_answers_404_for_an_unknown_action(bob: APIClient) -> None:
    response = bob.get("/api/v1/actions/core.nope")

    assert response.status_code == 404
    assert response.json() == {"error": "Action 'core.nope' not found"}


def test_it_creates_an_action_whose_ref_is_pack_dot_name(alice: APIClient, core_pack: Any) -> None:
    response = alice.post("/api/v1/actions", NEW_ACTION, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["ref"] == "core.hello"
    assert body["effective_concurrency_limit"] == 2
    assert Action.objects.get(ref="core.hello").entrypoint == "workers.core_actions.echo"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"name": "Hello World"}, "name: An action name may hold only lowercase letters, digits and '_'."),
        ({"runner": "perl"}, 'runner: "perl" is not a valid choice.'),
        (
            {"parameters_schema": {"type": "objekt"}},
            "parameters_schema: Not a valid JSON schema: "
            "'objekt' is not valid under any of the given schemas",
        ),
        (
            {"parameters_schema": {"properties": {"url": {"$ref": "https://example.com/url.json"}}}},
            "parameters_schema: Not a usable JSON schema: $ref 'https://example.com/url.json' does not "
            "resolve within the schema (references to other documents are not fetched)",
        ),
        ({"timeout_seconds": 0}, "timeout_seconds: Ensure this value is greater than or equal to 1."),
        ({"max_queue_length": -1}, "max_queue_length: Ensure this value is greater than or equal to 1."),
    ],
)
def test_it_refuses_an_invalid_action_naming_the_field(
    alice: APIClient, core_pack: Any, change: dict[str, Any], error: str
) -> None:
    response = alice.post("/api/v1/actions", {**NEW_ACTION, **change}, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == error
    assert not Action.objects.filter(ref="core.hello").exists()


def test_it_answers_409_for_a_name_the_pack_already_has(alice: APIClient, core_pack: Any) -> None:
    response = alice.post("/api/v1/actions", {**NEW_ACTION, "name": "sleep"}, format="json")

    assert response.status_code == 409
    assert response.json() == {"error": "Action 'core.sleep' already exists"}
    assert Action.objects.get(ref="core.sleep").entrypoint == "workers.core_actions.sleep"


def test_it_answers_404_for_an_action_in_an_unknown_pack(alice: APIClient, core_pack: Any) -> None:
    # As requesting an execution of an unknown action is.
    response = alice.post("/api/v1/actions", {**NEW_ACTION, "pack": "nope"}, format="json")

    assert response.status_code == 404
    assert response.json() == {"error": "Pack 'nope' not found"}
    assert not Pack.objects.filter(ref="nope").exists()


def test_it_changes_an_actions_policy_but_never_its_ref(alice: APIClient, core_pack: Any) -> None:
    changed = alice.patch(
        "/api/v1/actions/core.sleep",
        {"concurrency_limit": 3, "max_queue_length": 50, "queue_timeout_seconds": 60, "enabled": False},
        format="json",
    )
    renamed = alice.patch("/api/v1/actions/core.sleep", {"name": "nap"}, format="json")
    moved = alice.patch("/api/v1/actions/core.sleep", {"pack": "core"}, format="json")

    assert changed.status_code == 200
    assert changed.json()["effective_concurrency_limit"] == 3
    action = Action.objects.get(ref="core.sleep")
    assert (action.concurrency_limit, action.max_queue_length, action.enabled) == (3, 50, False)
    assert renamed.status_code == 409
    assert renamed.json() == {
        "error": "name: Cannot be changed once created: it is part of the action's ref 'core.sleep'.",
        "field": "name",
    }
    # Naming the pack it is already in changes nothing, so it is allowed.
    assert moved.status_code == 200


def test_it_replaces_an_action_with_put(alice: APIClient, core_pack: Any) -> None:
    response = alice.put(
        "/api/v1/actions/core.echo",
        {**NEW_ACTION, "name": "echo", "label": "Echo again", "concurrency_limit": None},
        format="json",
    )

    assert response.status_code == 200
    assert Action.objects.get(ref="core.echo").label == "Echo again"


@pytest.mark.django_db(transaction=True)
def test_it_applies_a_raised_limit_at_once(
    alice: APIClient, bob: APIClient, make_action: Any, redis_db: Any
) -> None:
    action = make_action("throttled", concurrency_limit=1)
    for _ in range(4):
        bob.post("/api/v1/executions", {"action": action.ref}, format="json")
    assert Execution.objects.filter(status=S.QUEUED).count() == 3

    response = alice.patch(f"/api/v1/actions/{action.ref}", {"concurrency_limit": 3}, format="json")

    assert response.status_code == 200
    # The two heads of the queue started, in order; the last still waits.
    by_seq = list(Execution.objects.order_by("queue_seq").values_list("status", flat=True))
    assert by_seq == [S.SCHEDULED, S.SCHEDULED, S.SCHEDULED, S.QUEUED]
