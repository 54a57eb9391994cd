"""What the API's JSON parser reads: bodies within the size limit, nested
within the depth limit, numbers JSON can carry."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.test import RequestFactory, override_settings
from rest_framework.exceptions import ParseError

from attune.parsers import MAX_JSON_DEPTH, JSONParser, RequestTooLarge, json_depth_exceeds

LIMIT = 1000


def parse(body: bytes, *, content_length: int | None = None) -> Any:
    """Parse ``body`` as a request whose Content-Length says ``content_length`` (none if None)."""
    request = RequestFactory().post("/api/v1/executions")
    request.META.pop("CONTENT_LENGTH", None)
    if content_length is not None:
        request.META["CONTENT_LENGTH"] = str(content_length)
    return JSONParser().parse(io.BytesIO(body), "application/json", {"request": request})


def nested(depth: int) -> Any:
    """``depth`` levels of objects and lists, alternating."""
    value: Any = 1
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=LIMIT)
def test_it_refuses_a_body_whose_content_length_is_over_the_limit_without_reading_it() -> None:
    stream = io.BytesIO(b"x" * (LIMIT + 1))
    request = RequestFactory().post("/api/v1/executions", CONTENT_LENGTH=str(LIMIT + 1))

    with pytest.raises(RequestTooLarge) as refused:
        JSONParser().parse(stream, "application/json", {"request": request})

    assert refused.value.status_code == 413
    assert str(refused.value.detail) == (
        f"Request body too large: at most {LIMIT} bytes are accepted, this one has {LIMIT + 1}"
    )
    assert stream.tell() == 0


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=LIMIT)
def test_it_refuses_a_body_longer_than_the_limit_whatever_its_headers_say() -> None:
    with pytest.raises(RequestTooLarge) as refused:
        parse(json.dumps(["x" * LIMIT]).encode())

    assert str(refused.value.detail) == f"Request body too large: at most {LIMIT} bytes are accepted"


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=LIMIT)
def test_it_reads_a_body_of_exactly_the_limit() -> None:
    body = json.dumps({"message": "x" * (LIMIT - 15)}).encode()
    assert len(body) == LIMIT

    assert parse(body, content_length=LIMIT) == {"message": "x" * (LIMIT - 15)}


def test_it_reads_json_nested_up_to_the_limit_and_no_deeper() -> None:
    assert parse(json.dumps(nested(MAX_JSON_DEPTH)).encode()) == nested(MAX_JSON_DEPTH)
    with pytest.raises(ParseError) as refused:
        parse(json.dumps(nested(MAX_JSON_DEPTH + 1)).encode())

    assert str(refused.value.detail) == (
        f"JSON parse error - the document is nested deeper than {MAX_JSON_DEPTH} levels"
    )


def test_it_refuses_json_too_deep_for_the_decoder() -> None:
    with pytest.raises(ParseError) as refused:
        parse(b"[" * 100_000 + b"]" * 100_000)

    assert str(refused.value.detail) == "JSON parse error - the document is nested too deeply"


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1.5e999"])
def test_it_refuses_a_number_that_overflows_to_infinity(number: str) -> None:
    with pytest.raises(ParseError) as refused:
        parse(f'{{"seconds": {number}}}'.encode())

    assert str(refused.value.detail) == f"JSON parse error - number {number} is out of range"


@pytest.mark.parametrize("constant", ["Infinity", "-Infinity", "NaN"])
def test_it_refuses_the_constants_json_does_not_have(constant: str) -> None:
    with pytest.raises(ParseError):
        parse(f'{{"seconds": {constant}}}'.encode())


def test_it_reads_large_numbers_json_can_carry_and_refuses_absurd_ones() -> None:
    assert parse(b'{"n": 1e308, "i": 123456789012345678901234567890}') == {
        "n": 1e308,
        "i": 123456789012345678901234567890,
    }
    with pytest.raises(ParseError) as refused:
        parse(b'{"i": ' + b"9" * 5000 + b"}")

    assert "JSON parse error" in str(refused.value.detail)


def test_the_depth_check_counts_objects_and_lists_but_not_scalars() -> None:
    assert not json_depth_exceeds({"a": [1, "deep", None]}, 2)
    assert json_depth_exceeds({"a": [[]]}, 2)
    assert not json_depth_exceeds("a string", 0)
