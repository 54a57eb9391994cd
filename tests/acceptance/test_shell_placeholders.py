"""Shell metacharacters sent through the API into a `shell` action's
`{name}` placeholder stay one quoted word: a real worker runs the command,
prints each value back literally, and none of the commands smuggled in
runs (the files they would create do not exist). And a command whose
output holds NUL characters, which PostgreSQL cannot store, still ends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from executions.models import MAX_TIMEOUT_SECONDS, Grant, GrantPermission, Pack
from executions.services import request_execution
from tests.helpers import wait_all_terminal

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]


def _client(username: str, *, is_staff: bool, is_superuser: bool = False) -> APIClient:
    user = User.objects.create_user(
        username, password=f"{username}-password", is_staff=is_staff, is_superuser=is_superuser
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {Token.objects.create(user=user).key}")
    client.user = user  # type: ignore[attr-defined]
    return client


def _payloads(marker_dir: Path) -> list[str]:
    """Values that would each create a file in ``marker_dir`` if the shell
    read them as code rather than as one word."""
    marker = [str(marker_dir / f"pwned-{index}") for index in range(12)]
    return [
        f"; touch {marker[0]}",
        f"$(touch {marker[1]})",
        f"`touch {marker[2]}`",
        f"| touch {marker[3]}",
        f"&& touch {marker[4]}",
        f"' ; touch {marker[5]} ; '",
        f'"; touch {marker[6]}; "',
        f"\ntouch {marker[7]}",
        f"> {marker[8]}",
        f"\\'; touch {marker[9]} #",
        f"x; touch {marker[10]} &",
        f"{{message}} $(touch {marker[11]}) $HOME ${{IFS}} * ? ~",
    ]


def test_metacharacters_through_a_placeholder_stay_quoted(
    worker_factory: Any, redis_db: redis.Redis, tmp_path: Path
) -> None:
    # A superuser defines the shell action; dana runs it with a grant.
    alice = _client("alice", is_staff=True, is_superuser=True)
    dana = _client("dana", is_staff=False)
    created = alice.post(
        "/api/v1/actions",
        {
            "pack": Pack.objects.create(ref="ops").ref,
            "name": "say",
            "runner": "shell",
            "entrypoint": "printf '%s\\n' {message}",
            "parameters_schema": {
                "type": "object",
                "properties": {"message": {"type": "string"}},
                "required": ["message"],
                "additionalProperties": False,
            },
            # The longest the API takes: a worker runs it like any other
            # (PostgreSQL's largest integer, taken before, failed every run).
            "timeout_seconds": MAX_TIMEOUT_SECONDS,
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    # A shell action needs an explicit grant, even for staff.
    Grant.objects.create(permission=GrantPermission.EXECUTE, pack=Pack.objects.get(ref="ops"), user=dana.user)  # type: ignore[attr-defined]
    markers = tmp_path / "markers"
    markers.mkdir()
    payloads = _payloads(markers)
    worker_factory(concurrency=2)

    response = dana.post(
        "/api/v1/executions",
        json.dumps([{"action": "ops.say", "parameters": {"message": value}} for value in payloads]),
        content_type="application/json",
    )

    assert response.status_code == 201, response.json()
    ids = [item["id"] for item in response.json()]
    ended = {str(e.pk): e for e in wait_all_terminal(ids, timeout=120)}
    for execution_id, value in zip(ids, payloads, strict=True):
        execution = ended[execution_id]
        assert execution.status == "completed", (value, execution.error, execution.result)
        assert execution.result["stdout"] == f"{value}\n", value
        assert execution.result["exit_code"] == 0
    assert sorted(path.name for path in markers.iterdir()) == []


def test_output_holding_nul_characters_is_stored(
    make_action: Any, worker_factory: Any, redis_db: redis.Redis
) -> None:
    action = make_action("nul_out", runner="shell", entrypoint="printf 'a\\000b'; printf 'c\\000d' >&2")
    worker_factory(concurrency=1)

    execution = request_execution(action.ref, {})
    (ended,) = wait_all_terminal([str(execution.pk)], timeout=60)

    # Before, the UPDATE ending it failed and it stayed running until its lease ran out.
    assert ended.status == "completed", (ended.status, ended.error)
    assert ended.result == {"stdout": "a\ufffdb", "stderr": "c\ufffdd", "exit_code": 0}
