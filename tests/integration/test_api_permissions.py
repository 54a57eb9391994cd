"""Who may call what, for every endpoint of the API.

charlie (anonymous) gets 401 everywhere, with a Bearer challenge. bob (a
plain user granted `execute` on the core pack) reads packs and actions,
requests core's actions and cancels his own; he gets 403 for defining packs
and actions, for purging and for the audit trail. alice (staff) may do it
all. Object-level rules (grants, others' executions) are in
test_object_permissions.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from executions.services import request_execution
from queues.stats import flush_once

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

READ = {"charlie": 401, "bob": 200, "alice": 200}
STAFF_READ = {"charlie": 401, "bob": 403, "alice": 200}
STAFF_WRITE = {"charlie": 401, "bob": 403, "alice": 200}
STAFF_CREATE = {"charlie": 401, "bob": 403, "alice": 201}
ANYONE_CREATE = {"charlie": 401, "bob": 201, "alice": 201}
ANYONE_WRITE = {"charlie": 401, "bob": 200, "alice": 200}

# (method, path, body, expected status per persona). {persona} makes
# created objects distinct; {execution} is an execution of that persona's own.
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, dict[str, int]]] = [
    ("get", "/api/v1/packs", None, READ),
    ("get", "/api/v1/packs/core", None, READ),
    ("post", "/api/v1/packs", {"ref": "pack_{persona}"}, STAFF_CREATE),
    ("patch", "/api/v1/packs/core", {"label": "Core"}, STAFF_WRITE),
    ("put", "/api/v1/packs/core", {"ref": "core", "label": "Core"}, STAFF_WRITE),
    ("get", "/api/v1/actions", None, READ),
    ("get", "/api/v1/actions/core.noop", None, READ),
    (
        "post",
        "/api/v1/actions",
        {
            "pack": "core",
            "name": "n_{persona}",
            "runner": "python",
            "entrypoint": "workers.core_actions.noop",
        },
        STAFF_CREATE,
    ),
    ("patch", "/api/v1/actions/core.noop", {"concurrency_limit": 5}, STAFF_WRITE),
    ("get", "/api/v1/actions/core.noop/queue-stats", None, READ),
    ("post", "/api/v1/actions/core.noop/purge", None, STAFF_WRITE),
    ("get", "/api/v1/queue-stats", None, READ),
    ("get", "/api/v1/executions", None, READ),
    ("post", "/api/v1/executions", {"action": "core.noop"}, ANYONE_CREATE),
    ("get", "/api/v1/executions/{execution}", None, READ),
    ("post", "/api/v1/executions/{execution}/cancel", None, ANYONE_WRITE),
    ("get", "/api/v1/audit", None, STAFF_READ),
    ("get", "/api/schema/", None, READ),
    ("get", "/api/docs/", None, READ),
]
PERSONAS = ["alice", "bob", "charlie"]


def _fill(value: Any, **names: str) -> Any:
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {key: _fill(item, **names) for key, item in value.items()}
    return value


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize(
    ("method", "path", "body", "expected"), ENDPOINTS, ids=[f"{m.upper()} {p}" for m, p, _, _ in ENDPOINTS]
)
def test_it_lets_each_persona_do_only_what_they_may(
    personas: dict[str, APIClient],
    core_pack: Any,
    redis_db: Any,
    persona: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    expected: dict[str, int],
) -> None:
    client = personas[persona]
    execution = request_execution("core.noop", requested_by=getattr(client, "user", None))
    flush_once()
    url = _fill(path, persona=persona, execution=str(execution.pk))

    response = getattr(client, method)(url, _fill(body, persona=persona), format="json")

    assert response.status_code == expected[persona], response.content[:300]
    if persona == "charlie":
        assert response["WWW-Authenticate"] == "Bearer"
        if path.startswith("/api/v1/"):
            assert response.json() == {"error": "Authentication credentials were not provided."}
    elif expected[persona] == 403:
        assert response.json()["error"] in {
            "Creating or changing packs and actions needs a staff account.",
            "This needs a staff account.",
        }


def test_it_refuses_an_unknown_token(charlie: APIClient) -> None:
    charlie.credentials(HTTP_AUTHORIZATION="Bearer 0123456789abcdef")

    response = charlie.get("/api/v1/packs")

    assert response.status_code == 401
    assert response.json() == {"error": "Invalid token."}


def test_it_refuses_the_token_of_an_inactive_user(bob: APIClient) -> None:
    bob.user.is_active = False  # type: ignore[attr-defined]
    bob.user.save()  # type: ignore[attr-defined]

    response = bob.get("/api/v1/packs")

    assert response.status_code == 401
    assert response.json() == {"error": "User inactive or deleted."}


def test_it_accepts_a_session_login_for_reading_and_wants_csrf_for_writing(
    core_pack: Any, redis_db: Any
) -> None:
    from django.contrib.auth.models import User

    User.objects.create_user("dora", password="dora-password")
    browser = APIClient(enforce_csrf_checks=True)
    assert browser.login(username="dora", password="dora-password")

    assert browser.get("/api/v1/actions/core.noop").status_code == 200
    refused = browser.post("/api/v1/executions", {"action": "core.noop"}, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"].startswith("CSRF Failed")
