"""Input no honest client sends: a 10 MB body, JSON nested absurdly deep,
NUL characters in refs and parameters, integers too large for any limit,
values of the wrong JSON type. Each is a 4xx whose message names the
problem, and nothing is written: not an execution, action, pack or audit
entry more than before, nothing admitted to the gate.

alice is staff, bob a plain user granted `execute` on the core and test
packs (tests/integration/conftest.py). Shell metacharacters through `{name}`
placeholders need a worker: tests/acceptance/test_shell_placeholders.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from rest_framework.test import APIClient

from attune.parsers import MAX_JSON_DEPTH
from executions.models import MAX_TIMEOUT_SECONDS, Action, AuditEntry, Execution, Pack

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

URL = "/api/v1/executions"
TEN_MB = 10 * 1024 * 1024
DB_INT_MAX = 2_147_483_647
NUL_MESSAGE = "Null characters are not allowed."


def _rows() -> dict[str, int]:
    return {
        "executions": Execution.objects.count(),
        "actions": Action.objects.count(),
        "packs": Pack.objects.count(),
        "audit": AuditEntry.objects.count(),
    }


def _gate_keys(client: redis.Redis) -> set[str]:
    # The throttles count requests in the same Redis (CACHES): not the gate's.
    return {key for key in client.keys("*") if ":cache:" not in key}


@pytest.fixture
def nothing_written(alice: APIClient, bob: APIClient, redis_db: redis.Redis) -> Iterator[Callable[[], None]]:
    """Call it after the requests: fails if a row was added or the gate saw
    anything. (bob's fixture loaded the core pack and his grants already.)"""
    before = _rows()
    gate_keys = _gate_keys(redis_db)

    def check() -> None:
        assert _rows() == before
        assert _gate_keys(redis_db) - gate_keys == set()

    yield check


@pytest.fixture
def open_action(make_action: Any) -> Any:
    """test.open: any parameters object (bob may run it through his grant on `test`)."""
    return make_action("open", parameters_schema={"type": "object"})


def nested(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def nested_text(depth: int) -> str:
    """nested(depth) as JSON text, built without json.dumps, which would
    itself run out of stack this deep inside pytest."""
    return '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1)


def post_json(client: APIClient, url: str, body: Any, method: str = "post") -> Any:
    return getattr(client, method)(url, json.dumps(body), content_type="application/json")


# --- size ------------------------------------------------------------------------


def test_a_10_mb_body_is_413_and_nothing_is_written(
    alice: APIClient, bob: APIClient, nothing_written: Callable[[], None]
) -> None:
    huge = "x" * TEN_MB
    execution = post_json(bob, URL, {"action": "core.echo", "parameters": {"message": huge}})
    batch = post_json(bob, URL, [{"action": "core.echo", "parameters": {"message": huge[:5000]}}] * 2100)
    pack = post_json(alice, "/api/v1/packs", {"ref": "big", "description": huge})
    action = post_json(alice, "/api/v1/actions/core.echo", {"description": huge}, method="patch")

    for response in (execution, batch, pack, action):
        assert response.status_code == 413
        assert response.json()["error"].startswith(
            "Request body too large: at most 2621440 bytes are accepted, this one has "
        )
    nothing_written()
    assert Action.objects.get(ref="core.echo").description == ""


def test_a_body_under_the_limit_is_read(bob: APIClient, redis_db: redis.Redis) -> None:
    response = post_json(bob, URL, {"action": "core.echo", "parameters": {"message": "x" * 2_000_000}})

    assert response.status_code == 201
    assert len(Execution.objects.get().parameters["message"]) == 2_000_000


# --- depth -----------------------------------------------------------------------


def test_json_nested_deeper_than_the_limit_is_400_and_nothing_is_written(
    alice: APIClient, bob: APIClient, open_action: Any, nothing_written: Callable[[], None]
) -> None:
    # The body is one level, so parameters may nest one less than the limit.
    too_deep = post_json(bob, URL, {"action": open_action.ref, "parameters": nested(MAX_JSON_DEPTH)})
    schema = post_json(
        alice, f"/api/v1/actions/{open_action.ref}", {"parameters_schema": nested(200)}, method="patch"
    )
    # Around Python's recursion limit: refused whether the decoder manages it or not.
    near_recursion_limit = bob.post(
        URL,
        f'{{"action": "{open_action.ref}", "parameters": {nested_text(950)}}}',
        content_type="application/json",
    )
    absurd = bob.post(URL, "[" * 200_000 + "]" * 200_000, content_type="application/json")

    for response in (too_deep, schema):
        assert response.status_code == 400
        assert response.json() == {
            "error": f"JSON parse error - the document is nested deeper than {MAX_JSON_DEPTH} levels"
        }
    assert near_recursion_limit.status_code == 400
    assert near_recursion_limit.json()["error"].startswith("JSON parse error - the document is nested")
    assert absurd.status_code == 400
    assert absurd.json() == {"error": "JSON parse error - the document is nested too deeply"}
    nothing_written()


def test_json_nested_up_to_the_limit_is_stored(
    bob: APIClient, open_action: Any, redis_db: redis.Redis
) -> None:
    response = post_json(bob, URL, {"action": open_action.ref, "parameters": nested(MAX_JSON_DEPTH - 1)})

    assert response.status_code == 201
    assert Execution.objects.get().parameters == nested(MAX_JSON_DEPTH - 1)


# --- NUL ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"message": "a\x00b"}, "parameters.message"),
        ({"items": ["fine", "not\x00fine"]}, "parameters.items[1]"),
        ({"outer": {"inner": [{"x": "\x00"}]}}, "parameters.outer.inner[0].x"),
        ({"key\x00": "value"}, "parameters"),
    ],
)
def test_nul_in_parameters_is_400_naming_the_field(
    bob: APIClient, open_action: Any, nothing_written: Callable[[], None], parameters: Any, field: str
) -> None:
    response = post_json(bob, URL, {"action": open_action.ref, "parameters": parameters})

    assert response.status_code == 400
    assert response.json() == {
        "error": f"{field}: must not contain the NUL character (\\u0000): it cannot be stored",
        "field": field,
    }
    nothing_written()


def test_nul_in_one_item_of_a_batch_is_400_naming_the_item(
    bob: APIClient, open_action: Any, nothing_written: Callable[[], None]
) -> None:
    items = [{"action": open_action.ref, "parameters": {"m": "ok"}}, {"action": open_action.ref}] * 2
    items[3] = {"action": open_action.ref, "parameters": {"m": "\x00"}}

    response = post_json(bob, URL, items)

    assert response.status_code == 400
    assert response.json()["field"] == "parameters[3].m"
    nothing_written()


def test_nul_in_body_refs_and_text_is_400_naming_the_field(
    alice: APIClient, bob: APIClient, nothing_written: Callable[[], None]
) -> None:
    action = {"pack": "core", "name": "hello", "runner": "python", "entrypoint": "workers.core_actions.echo"}
    cases = [
        (post_json(bob, URL, {"action": "core.e\x00cho"}), "action", NUL_MESSAGE),
        (post_json(alice, "/api/v1/packs", {"ref": "ops\x00"}), "ref", NUL_MESSAGE),
        (post_json(alice, "/api/v1/packs", {"ref": "ops", "label": "O\x00ps"}), "label", NUL_MESSAGE),
        (post_json(alice, "/api/v1/actions", {**action, "pack": "co\x00re"}), "pack", NUL_MESSAGE),
        (post_json(alice, "/api/v1/actions", {**action, "entrypoint": "a.\x00b"}), "entrypoint", NUL_MESSAGE),
        (
            post_json(alice, "/api/v1/actions", {**action, "parameters_schema": {"description": "\x00"}}),
            "parameters_schema",
            "Must not contain the NUL character (\\u0000) (at description): it cannot be stored",
        ),
        (
            post_json(alice, "/api/v1/actions/core.echo", {"label": "\x00"}, method="patch"),
            "label",
            NUL_MESSAGE,
        ),
    ]

    for response, field, message in cases:
        assert response.status_code == 400, (field, response.json())
        body = response.json()
        # A ref's pattern refuses it too, and may be named first.
        assert body["error"].startswith(f"{field}: ")
        assert message in body["detail"][field]
    nothing_written()


def test_a_ref_with_nul_in_the_path_names_nothing(
    alice: APIClient, bob: APIClient, nothing_written: Callable[[], None]
) -> None:
    # PostgreSQL stores no NUL, so no ref holds one: the same 404 as any unknown ref.
    responses = {
        "pack": bob.get("/api/v1/packs/co%00re"),
        "action": bob.get("/api/v1/actions/core.e%00cho"),
        "queue stats": bob.get("/api/v1/actions/core.e%00cho/queue-stats"),
        "purge": alice.post("/api/v1/actions/core.e%00cho/purge"),
        "change": post_json(alice, "/api/v1/actions/core.e%00cho", {"label": "x"}, method="patch"),
        "execution": bob.get(f"{URL}/%00"),
        "cancel": bob.post(f"{URL}/%00/cancel"),
    }

    assert {name: r.status_code for name, r in responses.items()} == dict.fromkeys(responses, 404)
    assert responses["pack"].json() == {"error": "Pack 'co\x00re' not found"}
    assert responses["purge"].json() == {"error": "Action 'core.e\x00cho' not found"}
    nothing_written()


@pytest.mark.parametrize(
    ("url", "field"), [(f"{URL}?action=a%00", "action"), ("/api/v1/actions?pack=%00", "pack")]
)
def test_nul_in_a_query_filter_is_400_naming_it(bob: APIClient, url: str, field: str) -> None:
    response = bob.get(url)

    assert response.status_code == 400
    assert response.json()["error"] == f"{field}: {NUL_MESSAGE}"


# --- huge integers -------------------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["concurrency_limit", "max_queue_length", "timeout_seconds", "queue_timeout_seconds"]
)
@pytest.mark.parametrize("value", [DB_INT_MAX + 1, 10**30, -(10**30)])
def test_a_limit_beyond_what_the_database_holds_is_400_naming_it(
    alice: APIClient, nothing_written: Callable[[], None], field: str, value: int
) -> None:
    before = Action.objects.values().get(ref="core.sleep")

    response = post_json(alice, "/api/v1/actions/core.sleep", {field: value}, method="patch")

    assert response.status_code == 400
    largest = MAX_TIMEOUT_SECONDS if field == "timeout_seconds" else DB_INT_MAX
    bound = f"less than or equal to {largest}" if value > 0 else "greater than or equal to 1"
    assert response.json()["error"] == f"{field}: Ensure this value is {bound}."
    assert Action.objects.values().get(ref="core.sleep") == before
    nothing_written()


def test_a_timeout_longer_than_a_worker_can_wait_is_400(
    alice: APIClient, nothing_written: Callable[[], None]
) -> None:
    # Accepted before, then every run failed: the shell runner's wait overflowed.
    too_long = post_json(
        alice, "/api/v1/actions/core.sleep", {"timeout_seconds": 30 * 24 * 3600}, method="patch"
    )
    longest = post_json(
        alice, "/api/v1/actions/core.sleep", {"timeout_seconds": MAX_TIMEOUT_SECONDS}, method="patch"
    )

    assert too_long.status_code == 400
    assert (
        too_long.json()["error"]
        == f"timeout_seconds: Ensure this value is less than or equal to {MAX_TIMEOUT_SECONDS}."
    )
    assert longest.status_code == 200
    assert Action.objects.get(ref="core.sleep").timeout_seconds == MAX_TIMEOUT_SECONDS


def test_the_largest_limit_the_database_holds_is_taken(alice: APIClient, core_pack: Any) -> None:
    response = post_json(
        alice,
        "/api/v1/packs",
        {"ref": "roomy", "concurrency_limit": DB_INT_MAX},
    )

    assert response.status_code == 201
    assert Pack.objects.get(ref="roomy").concurrency_limit == DB_INT_MAX


def test_numbers_json_cannot_carry_are_400(
    bob: APIClient, alice: APIClient, nothing_written: Callable[[], None]
) -> None:
    infinite = bob.post(
        URL, '{"action": "core.sleep", "parameters": {"seconds": 1e400}}', content_type="application/json"
    )
    endless = alice.patch(
        "/api/v1/packs/core", '{"concurrency_limit": ' + "9" * 5000 + "}", content_type="application/json"
    )

    assert infinite.status_code == 400
    assert infinite.json() == {"error": "JSON parse error - number 1e400 is out of range"}
    assert endless.status_code == 400
    assert endless.json()["error"].startswith("JSON parse error - Exceeds the limit (4300 digits)")
    nothing_written()


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ({"limit": str(10**30)}, f"limit: Must be a whole number from 1 to 500, got '{10**30}'."),
        ({"limit": "0"}, "limit: Must be a whole number from 1 to 500, got '0'."),
        ({"limit": "501"}, "limit: Must be a whole number from 1 to 500, got '501'."),
        ({"offset": "-1"}, "offset: Must be a whole number of at least 0, got '-1'."),
        ({"offset": "9" * 5000}, f"offset: Must be a whole number of at least 0, got '{'9' * 5000}'."),
    ],
)
def test_a_page_size_or_offset_out_of_range_is_400_naming_it(
    bob: APIClient, query: dict[str, str], error: str
) -> None:
    response = bob.get("/api/v1/packs", query)

    assert response.status_code == 400
    assert response.json()["error"] == error


def test_an_offset_past_the_end_is_an_empty_page(bob: APIClient) -> None:
    response = bob.get("/api/v1/packs", {"offset": str(10**30)})

    assert response.status_code == 200
    assert response.json()["results"] == []


# --- types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"concurrency_limit": "5"}, "concurrency_limit: A valid integer is required."),
        ({"concurrency_limit": 5.0}, "concurrency_limit: A valid integer is required."),
        ({"enabled": "yes"}, "enabled: Must be a valid boolean."),
        ({"enabled": 1}, "enabled: Must be a valid boolean."),
        ({"description": 0}, "description: Not a valid string."),
        ({"runner": ["shell"]}, "runner: \"['shell']\" is not a valid choice."),
        ({"parameters_schema": []}, "parameters_schema: Must be a JSON object."),
        ({"parameters_schema": None}, "parameters_schema: This field may not be null."),
    ],
)
def test_a_value_of_the_wrong_json_type_is_400_not_coerced(
    alice: APIClient, nothing_written: Callable[[], None], change: dict[str, Any], error: str
) -> None:
    before = Action.objects.values().get(ref="core.sleep")

    response = post_json(alice, "/api/v1/actions/core.sleep", change, method="patch")

    assert response.status_code == 400
    assert response.json()["error"] == error
    assert Action.objects.values().get(ref="core.sleep") == before
    nothing_written()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"action": 5}, "action: Not a valid string."),
        ({"action": "core.echo", "parameters": "message=hi"}, "parameters: Must be a JSON object."),
        ({"action": "core.echo", "parameters": [1]}, "parameters: Must be a JSON object."),
    ],
)
def test_a_request_of_the_wrong_json_type_is_400(
    bob: APIClient, nothing_written: Callable[[], None], body: dict[str, Any], error: str
) -> None:
    response = post_json(bob, URL, body)

    assert response.status_code == 400
    assert response.json()["error"] == error
    nothing_written()


def test_a_form_encoded_body_is_415(alice: APIClient, nothing_written: Callable[[], None]) -> None:
    # Forms cannot say null, a nested object or a list; the API reads JSON only.
    response = alice.post("/api/v1/packs", {"ref": "ops"}, format="multipart")

    assert response.status_code == 415
    assert response.json()["error"].startswith('Unsupported media type "multipart/form-data')
    nothing_written()
