"""Who may run, see and cancel which executions, object by object.

The personas: alice may run deploy.* (an `execute` grant on the deploy
pack), bob may only read deploy's executions (a `read` grant), charlie has
nothing. sam is staff (not a superuser), root a superuser. Each is a real
user calling the API with a Bearer token.

The OWASP "broken object level authorization" cases: an id of someone
else's execution, guessed or leaked, answers exactly as an id that names
nothing (404, the same body), for reading and for cancelling, and the list
never holds what the user may not read, whatever the filters.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from executions.models import Action, Execution, Grant, GrantPermission, Pack
from executions.services import request_execution
from tests.integration.conftest import _client_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
P = GrantPermission
URL = "/api/v1/executions"


def _client(username: str, *, is_staff: bool = False, is_superuser: bool = False) -> APIClient:
    client = _client_for(username, is_staff=is_staff)
    if is_superuser:
        User.objects.filter(username=username).update(is_superuser=True)
    return client


@pytest.fixture
def world(redis_db: Any, core_pack: Any, make_action: Any) -> dict[str, Any]:
    actions = {
        "deploy.app": make_action("app", pack="deploy", concurrency_limit=1),
        "deploy.shell": make_action(
            "shell", pack="deploy", runner="shell", entrypoint="true", concurrency_limit=1
        ),
        "other.job": make_action("job", pack="other", concurrency_limit=1),
    }
    deploy = Pack.objects.get(ref="deploy")
    users = {
        "alice": _client("alice"),
        "bob": _client("bob"),
        "charlie": _client("charlie"),
        "sam": _client("sam", is_staff=True),
        "root": _client("root", is_staff=True, is_superuser=True),
    }
    Grant.objects.create(permission=P.EXECUTE, pack=deploy, user=users["alice"].user)  # type: ignore[attr-defined]
    Grant.objects.create(permission=P.READ, pack=deploy, user=users["bob"].user)  # type: ignore[attr-defined]
    return {"actions": actions, **users}


def _user(client: APIClient) -> Any:
    return client.user  # type: ignore[attr-defined]


def _request(client: APIClient, ref: str, parameters: Any = None) -> Any:
    return client.post(URL, {"action": ref, "parameters": parameters or {}}, format="json")


def test_only_a_grant_lets_a_plain_user_run_an_action(world: dict[str, Any]) -> None:
    alice, bob, charlie = world["alice"], world["bob"], world["charlie"]

    ran = _request(alice, "deploy.app")
    read_only = _request(bob, "deploy.app")
    nothing = _request(charlie, "deploy.app")
    elsewhere = _request(alice, "other.job")

    assert ran.status_code == 201
    assert ran.json()["requested_by"] == "alice"
    assert Execution.objects.get(pk=ran.json()["id"]).requested_by == _user(alice)
    for response in (read_only, nothing):
        assert response.status_code == 403
        assert response.json() == {
            "error": "You may not run action 'deploy.app': no grant gives you 'execute' on it or its pack"
        }
    assert elsewhere.status_code == 403
    assert "'other.job'" in elsewhere.json()["error"]
    assert Execution.objects.count() == 1


def test_a_refused_batch_leaves_nothing(world: dict[str, Any]) -> None:
    response = world["bob"].post(URL, [{"action": "deploy.app"}] * 3, format="json")

    assert response.status_code == 403
    assert Execution.objects.count() == 0


def test_staff_run_everything_but_shell_commands_which_need_a_grant(world: dict[str, Any]) -> None:
    sam, root = world["sam"], world["root"]

    python_action = _request(sam, "other.job")
    shell_action = _request(sam, "deploy.shell")
    core_local = _request(sam, "core.local", {"cmd": "true"})
    as_superuser = _request(root, "core.local", {"cmd": "true"})
    Grant.objects.create(permission=P.EXECUTE, action=world["actions"]["deploy.shell"], user=_user(sam))
    granted = _request(sam, "deploy.shell")

    assert python_action.status_code == 201
    for response, ref in ((shell_action, "deploy.shell"), (core_local, "core.local")):
        assert response.status_code == 403
        assert response.json()["error"] == (
            f"You may not run action '{ref}': it runs shell commands, which needs an explicit grant"
        )
    assert as_superuser.status_code == 201
    assert granted.status_code == 201


def test_a_group_grant_counts_for_its_members_and_a_revoked_one_at_once(world: dict[str, Any]) -> None:
    charlie = world["charlie"]
    operators = Group.objects.create(name="operators")
    _user(charlie).groups.add(operators)
    grant = Grant.objects.create(permission=P.EXECUTE, action=world["actions"]["other.job"], group=operators)

    allowed = _request(charlie, "other.job")
    not_the_pack = _request(charlie, "deploy.app")
    grant.delete()
    revoked = _request(charlie, "other.job")

    assert allowed.status_code == 201
    assert not_the_pack.status_code == 403
    assert revoked.status_code == 403


def test_each_user_lists_only_the_executions_they_may_read(world: dict[str, Any]) -> None:
    alice, bob, charlie, sam = world["alice"], world["bob"], world["charlie"], world["sam"]
    by_alice = _request(alice, "deploy.app").json()["id"]
    by_sam = _request(sam, "deploy.app").json()["id"]
    elsewhere = _request(sam, "other.job").json()["id"]

    def listed(client: APIClient, **filters: str) -> set[str]:
        response = client.get(URL, filters)
        assert response.status_code == 200
        return {row["id"] for row in response.json()["results"]}

    assert listed(alice) == {by_alice, by_sam}
    assert listed(bob) == {by_alice, by_sam}
    assert listed(charlie) == set()
    assert listed(charlie, action="other.job") == set()
    assert listed(sam) == {by_alice, by_sam, elsewhere}


def test_someone_elses_execution_is_not_found_and_shows_nothing(world: dict[str, Any]) -> None:
    alice, charlie = world["alice"], world["charlie"]
    secret = _request(alice, "deploy.app", {"token": "s3cret"}).json()["id"]
    missing = str(uuid.uuid4())

    read = charlie.get(f"{URL}/{secret}")
    cancel = charlie.post(f"{URL}/{secret}/cancel")
    read_missing = charlie.get(f"{URL}/{missing}")

    assert read.status_code == cancel.status_code == read_missing.status_code == 404
    assert read.json() == {"error": f"Execution '{secret}' not found"}
    assert read_missing.json() == {"error": f"Execution '{missing}' not found"}
    assert cancel.json() == read.json()
    assert b"s3cret" not in read.content + cancel.content
    assert Execution.objects.get(pk=secret).status == "scheduled"


def test_cancelling_is_for_the_requester_cancel_grants_and_staff(world: dict[str, Any]) -> None:
    alice, bob, sam = world["alice"], world["bob"], world["sam"]
    own = _request(alice, "deploy.app").json()["id"]
    sams = _request(sam, "deploy.app").json()["id"]
    third = _request(sam, "deploy.app").json()["id"]

    bob_refused = bob.post(f"{URL}/{own}/cancel")
    alice_own = alice.post(f"{URL}/{own}/cancel")
    alice_refused = alice.post(f"{URL}/{sams}/cancel")
    Grant.objects.create(permission=P.CANCEL, pack=Pack.objects.get(ref="deploy"), user=_user(alice))
    alice_granted = alice.post(f"{URL}/{sams}/cancel")
    staff = sam.post(f"{URL}/{third}/cancel")

    assert bob_refused.status_code == 403
    assert bob_refused.json()["error"].startswith("You may not cancel executions of action 'deploy.app'")
    assert alice_own.status_code == 200
    assert alice_own.json()["cancelled_by"] == "alice"
    assert alice_refused.status_code == 403
    assert alice_granted.status_code == 200
    assert staff.status_code == 200
    cancelled_by = dict(Execution.objects.values_list("pk", "cancelled_by__username"))
    assert {str(pk): name for pk, name in cancelled_by.items()} == {own: "alice", sams: "alice", third: "sam"}


def test_a_command_requests_without_a_user_and_only_staff_read_those(world: dict[str, Any]) -> None:
    execution = request_execution("deploy.app")

    assert execution.requested_by is None
    assert world["sam"].get(f"{URL}/{execution.pk}").json()["requested_by"] is None
    assert world["bob"].get(f"{URL}/{execution.pk}").status_code == 200
    assert world["charlie"].get(f"{URL}/{execution.pk}").status_code == 404


def test_only_a_superuser_defines_which_code_an_action_runs(world: dict[str, Any]) -> None:
    sam, root = world["sam"], world["root"]
    new = {"pack": "other", "name": "cmd", "runner": "python", "entrypoint": "os.system"}

    created_by_staff = sam.post("/api/v1/actions", new, format="json")
    repointed = sam.patch("/api/v1/actions/other.job", {"entrypoint": "os.system"}, format="json")
    relimited = sam.patch("/api/v1/actions/other.job", {"concurrency_limit": 4}, format="json")
    same_code = sam.patch("/api/v1/actions/other.job", {"runner": "python"}, format="json")
    created_by_root = root.post(
        "/api/v1/actions", {**new, "entrypoint": "workers.core_actions.noop"}, format="json"
    )

    message = (
        "Defining which code an action runs (creating one, or changing its runner or entrypoint) "
        "needs a superuser."
    )
    assert (created_by_staff.status_code, created_by_staff.json()) == (403, {"error": message})
    assert (repointed.status_code, repointed.json()) == (403, {"error": message})
    assert relimited.status_code == same_code.status_code == 200
    assert created_by_root.status_code == 201
    assert Action.objects.get(ref="other.job").entrypoint == "workers.core_actions.noop"
    assert not Action.objects.filter(entrypoint="os.system").exists()
