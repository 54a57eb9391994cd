"""The OpenAPI 3 schema: generated without a warning, valid by two
validators, served at /api/schema/, and listing every endpoint with the
errors it can answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from openapi_spec_validator import validate
from rest_framework.test import APIClient

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

PATHS = {
    "/api/v1/packs": {"get", "post"},
    "/api/v1/packs/{ref}": {"get", "put", "patch"},
    "/api/v1/actions": {"get", "post"},
    "/api/v1/actions/{ref}": {"get", "put", "patch"},
    "/api/v1/actions/{ref}/queue-stats": {"get"},
    "/api/v1/actions/{ref}/purge": {"post"},
    "/api/v1/queue-stats": {"get"},
    "/api/v1/executions": {"get", "post"},
    "/api/v1/executions/{id}": {"get"},
    "/api/v1/executions/{id}/cancel": {"post"},
    "/api/v1/audit": {"get"},
    "/api/v1/policies": {"get", "post"},
    "/api/v1/policies/{name}": {"get", "put", "patch", "delete"},
    "/api/v1/actions/{ref}/policies": {"get"},
}


@pytest.fixture
def schema(tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "schema.yml"
    # --fail-on-warn turns any guess drf-spectacular had to make into an error.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    return dict(yaml.safe_load(out.read_text()))


def test_it_generates_a_schema_that_openapi_spec_validator_accepts(schema: dict[str, Any]) -> None:
    validate(schema)

    assert schema["openapi"].startswith("3.")


def test_it_documents_every_endpoint_and_method(schema: dict[str, Any]) -> None:
    documented = {
        path: {method for method in operations if method != "parameters"}
        for path, operations in schema["paths"].items()
    }

    assert documented == PATHS


def test_it_documents_the_errors_of_requesting_an_execution(schema: dict[str, Any]) -> None:
    responses = schema["paths"]["/api/v1/executions"]["post"]["responses"]

    assert set(responses) == {"201", "202", "400", "401", "403", "404", "409", "413", "415", "429", "503"}
    error = responses["429"]["content"]["application/json"]["schema"]["$ref"]
    assert error == "#/components/schemas/Error"
    created = schema["components"]["schemas"]["ExecutionDetail"]["properties"]
    assert created["queue_position"]["nullable"] is True
    assert "estimated_wait_seconds" in created


def test_it_states_the_bounds_and_nulls_the_api_applies(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    batch = components["ExecutionRequestOrBatchRequest"]["oneOf"][1]
    limit = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/packs"]["get"]["parameters"]}

    assert (batch["type"], batch["minItems"], batch["maxItems"]) == ("array", 1, 1000)
    assert limit["limit"] == {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}
    assert components["ActionRequest"]["properties"]["timeout_seconds"]["maximum"] == 604800
    assert components["ActionRequest"]["properties"]["parameters_schema"]["type"] == "object"
    assert components["Execution"]["properties"]["requested_by"]["nullable"] is True
    assert components["Execution"]["properties"]["cancelled_by"]["nullable"] is True
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                assert {"413", "415"} <= set(operation["responses"]), f"{method} {path}"


def test_it_requires_authentication_on_every_operation(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]

    assert schemes["tokenAuth"] == {"type": "http", "scheme": "bearer"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert {"tokenAuth": []} in operation["security"], f"{method} {path}"
            assert "401" in operation["responses"], f"{method} {path}"


def test_it_serves_the_schema_and_the_docs_page(bob: APIClient) -> None:
    served = bob.get("/api/schema/", {"format": "json"})
    page = bob.get("/api/docs/")

    assert served.status_code == 200
    assert set(served.json()["paths"]) == set(PATHS)
    assert page.status_code == 200
    assert b"swagger-ui" in page.content
