from __future__ import annotations

import pytest

from executions.exceptions import InvalidParameters
from executions.models import Action
from executions.services import validate_parameters

SCHEMA = {
    "type": "object",
    "properties": {"seconds": {"type": "number", "minimum": 0}, "label": {"type": "string"}},
    "required": ["seconds"],
    "additionalProperties": False,
}


def action() -> Action:
    return Action(name="sleep", runner="python", entrypoint="x.y", parameters_schema=SCHEMA)


def test_it_accepts_parameters_that_match_the_schema() -> None:
    assert validate_parameters(action(), {"seconds": 1}) == {"seconds": 1}


def test_it_names_the_field_of_the_wrong_type() -> None:
    with pytest.raises(InvalidParameters) as caught:
        validate_parameters(action(), {"seconds": "soon"})
    assert caught.value.field == "parameters.seconds"
    assert str(caught.value) == "parameters.seconds: 'soon' is not of type 'number'"


def test_it_names_a_missing_required_field() -> None:
    with pytest.raises(InvalidParameters) as caught:
        validate_parameters(action(), {})
    assert caught.value.field == "parameters.seconds"
    assert "'seconds' is a required property" in str(caught.value)


def test_it_refuses_parameters_that_are_not_an_object() -> None:
    with pytest.raises(InvalidParameters, match="must be a JSON object"):
        validate_parameters(action(), ["seconds", 1])
