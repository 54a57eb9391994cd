"""An action's parameters_schema may only reference itself: a $ref that
does not resolve inside it is refused when the action is defined."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from executions.models import Action, unresolvable_ref

DEFS = {"$defs": {"port": {"type": "integer", "minimum": 1}}}


@pytest.mark.parametrize(
    "schema",
    [
        {},
        {"type": "object", "properties": {"port": {"$ref": "#/$defs/port"}}, **DEFS},
        {
            "type": "object",
            "properties": {"ports": {"type": "array", "items": {"$ref": "#/$defs/port"}}},
            **DEFS,
        },
        # A property named "$ref" is a schema, not a reference.
        {"type": "object", "properties": {"$ref": {"type": "string"}}},
    ],
)
def test_it_accepts_schemas_whose_refs_resolve_inside_them(schema: dict[str, Any]) -> None:
    assert unresolvable_ref(schema) is None


@pytest.mark.parametrize(
    ("schema", "ref"),
    [
        ({"$ref": "#/definitions/missing"}, "#/definitions/missing"),
        (
            {"properties": {"x": {"$ref": "https://example.com/schema.json"}}},
            "https://example.com/schema.json",
        ),
        ({"allOf": [{"$ref": "other.json#/a"}]}, "other.json#/a"),
    ],
)
def test_it_names_the_first_ref_that_does_not_resolve(schema: dict[str, Any], ref: str) -> None:
    assert unresolvable_ref(schema) == ref


def test_it_refuses_such_a_schema_in_model_validation() -> None:
    action = Action(name="x", runner="python", entrypoint="a.b", parameters_schema={"$ref": "#/nowhere"})

    with pytest.raises(ValidationError) as caught:
        action.clean()

    assert caught.value.message_dict == {
        "parameters_schema": [
            "Not a usable JSON schema: $ref '#/nowhere' does not resolve within the schema "
            "(references to other documents are not fetched)"
        ]
    }
