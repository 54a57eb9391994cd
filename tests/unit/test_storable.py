"""The NUL characters PostgreSQL cannot store in text or jsonb: where one
is in a value from outside, and how a worker's output holding one is stored
all the same."""

from __future__ import annotations

from typing import Any

import pytest

from executions.storable import nul_path, storable


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"message": "fine", "nested": {"ok": ["a", "b"]}}, None),
        ({"message": "a\x00b"}, "parameters.message"),
        ({"items": ["ok", "bad\x00"]}, "parameters.items[1]"),
        ({"outer": {"inner": [{"x": "\x00"}]}}, "parameters.outer.inner[0].x"),
        ({"key\x00": "value"}, "parameters"),
        ({"first": "\x00", "second": "\x00"}, "parameters.first"),
        ({"n": 1, "b": True, "z": None}, None),
    ],
)
def test_it_names_the_first_place_a_nul_character_is(value: Any, path: str | None) -> None:
    assert nul_path(value, "parameters") == path


def test_it_walks_a_value_deeper_than_the_recursion_limit() -> None:
    value: Any = "\x00"
    for _ in range(5000):
        value = [value]

    where = nul_path(value, "")

    assert where == "[0]" * 5000


def test_a_value_without_nul_is_stored_as_it_is() -> None:
    value = {"stdout": "fine", "items": [1, "two", None]}

    assert storable(value) is value


def test_nul_in_output_is_stored_as_the_replacement_character() -> None:
    value = {"stdout": "a\x00b", "z\x00": [{"x": "\x00"}, 1], "first": "ok"}

    stored = storable(value)

    assert stored == {"stdout": "a\ufffdb", "z\ufffd": [{"x": "\ufffd"}, 1], "first": "ok"}
    assert list(stored) == ["stdout", "z\ufffd", "first"]
    assert value["stdout"] == "a\x00b"
    assert storable("error: \x00") == "error: \ufffd"
