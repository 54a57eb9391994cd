"""The audit trail: each kind of change lands once, with who, from where,
and the fields before and after; a refused change leaves no entry; only
staff read it at GET /api/v1/audit."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from executions.models import AuditEntry, Grant, GrantPermission, Pack
from tests.helpers import action_admin_form

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
AUDIT = "/api/v1/audit"


def _entries(kind: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(kind=kind).order_by("pk"))


def test_it_records_packs_and_actions_made_and_changed_through_the_api(
    alice: APIClient, redis_db: Any
) -> None:
    alice.post("/api/v1/packs", {"ref": "deploy"}, format="json")
    alice.post(
        "/api/v1/actions",
        {"pack": "deploy", "name": "app", "runner": "python", "entrypoint": "workers.core_actions.noop"},
        format="json",
    )
    changed = alice.patch("/api/v1/actions/deploy.app", {"concurrency_limit": 5}, format="json")
    refused = alice.patch("/api/v1/actions/deploy.app", {"concurrency_limit": 0}, format="json")
    unchanged = alice.patch("/api/v1/actions/deploy.app", {"concurrency_limit": 5}, format="json")

    assert (changed.status_code, refused.status_code, unchanged.status_code) == (200, 400, 200)
    (pack,) = _entries("pack.created")
    (created,) = _entries("action.created")
    (change,) = _entries("action.changed")
    assert (pack.target, pack.actor_name, pack.source) == ("deploy", "alice", "api")
    assert created.after["entrypoint"] == "workers.core_actions.noop"
    assert created.after["pack"] == "deploy"
    assert (change.target, change.actor_name, change.source) == ("deploy.app", "alice", "api")
    assert (change.before, change.after) == ({"concurrency_limit": None}, {"concurrency_limit": 5})


def test_it_records_a_limit_changed_in_the_admin(make_action: Any, redis_db: Any) -> None:
    User.objects.create_superuser("root", password="root-password")
    admin = Client()
    assert admin.login(username="root", password="root-password")
    action = make_action("seen", concurrency_limit=1)
    form = action_admin_form(action, concurrency_limit=3)

    response = admin.post(f"/admin/executions/action/{action.pk}/change/", form)

    assert response.status_code == 302
    (change,) = _entries("action.changed")
    assert (change.actor_name, change.source, change.target) == ("root", "admin", "test.seen")
    assert (change.before, change.after) == ({"concurrency_limit": 1}, {"concurrency_limit": 3})


def test_it_records_cancels_and_purges_with_who_made_them(
    alice: APIClient, bob: APIClient, make_action: Any, redis_db: Any
) -> None:
    action = make_action("busy", concurrency_limit=1)
    running = bob.post("/api/v1/executions", {"action": action.ref}, format="json").json()["id"]
    for _ in range(3):
        bob.post("/api/v1/executions", {"action": action.ref}, format="json")

    bob.post(f"/api/v1/executions/{running}/cancel")
    alice.post(f"/api/v1/actions/{action.ref}/purge")

    (cancel,) = _entries("execution.cancelled")
    (purge,) = _entries("queue.purged")
    assert (cancel.target, cancel.actor_name, cancel.source) == (running, "bob", "api")
    assert cancel.before == {"status": "scheduled"}
    assert cancel.after == {"status": "canceling", "action": action.ref}
    assert (purge.target, purge.actor_name) == (action.ref, "alice")
    assert purge.after == {"cancelled": 3, "skipped": 0}


def test_it_records_grants_given_and_taken_back_and_changes_made_by_commands(
    make_action: Any, redis_db: Any
) -> None:
    user = User.objects.create_user("dana")
    action = make_action("granted")
    grant = Grant.objects.create(permission=GrantPermission.EXECUTE, action=action, user=user)
    target = f"execute on action test.granted to user dana (#{grant.pk})"
    grant.delete()
    call_command("purge_queue", action.ref, "--yes")

    (given,) = _entries("grant.created")
    (taken,) = _entries("grant.deleted")
    (purge,) = _entries("queue.purged")
    assert given.target == taken.target == target
    assert (given.after["permission"], given.after["user"], given.after["action"]) == (
        "execute",
        "dana",
        "test.granted",
    )
    assert taken.before == given.after
    assert (given.source, given.actor) == ("command", None)
    assert (purge.source, purge.actor_name, purge.actor) == ("command", "", None)


def test_only_staff_read_the_trail_filtered_by_kind_and_actor(
    alice: APIClient, bob: APIClient, redis_db: Any
) -> None:
    alice.post("/api/v1/packs", {"ref": "one"}, format="json")
    alice.patch("/api/v1/packs/one", {"label": "One"}, format="json")

    everything = alice.get(AUDIT).json()
    changes = alice.get(AUDIT, {"kind": "pack.changed", "actor": "alice"}).json()
    nobody = alice.get(AUDIT, {"actor": "nobody"}).json()
    as_bob = bob.get(AUDIT)
    bad_kind = alice.get(AUDIT, {"kind": "pack.eaten"})

    kinds = [row["kind"] for row in everything["results"]]
    assert kinds[:2] == ["pack.changed", "pack.created"]
    assert [(row["target"], row["before"], row["after"]) for row in changes["results"]] == [
        ("one", {"label": ""}, {"label": "One"})
    ]
    assert nobody["results"] == []
    assert as_bob.status_code == 403
    assert bad_kind.status_code == 400
    assert Pack.objects.filter(ref="one").exists()
