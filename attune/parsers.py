"""The API reads JSON bodies only, of bounded size and depth.

Form encodings cannot say null, a nested object or a list (a batch), so a
field sent that way would mean something else than the schema says; every
client of the API sends JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework import parsers, status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.utils.json import strict_constant

# Deeper than any parameters or JSON schema a person writes, and far below the
# depth at which json.dumps, jsonschema or PostgreSQL would exhaust a stack
# later on, after the request was accepted.
MAX_JSON_DEPTH = 64


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "request_too_large"


def max_body_bytes() -> int | None:
    """Django's DATA_UPLOAD_MAX_MEMORY_SIZE: the largest body read; None is no limit."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return None if limit is None else int(limit)


def too_large(size: int | None, limit: int) -> RequestTooLarge:
    message = f"Request body too large: at most {limit} bytes are accepted"
    return RequestTooLarge(f"{message}, this one has {size}" if size is not None else message)


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects and lists more than ``limit`` deep
    (an explicit stack: no recursion on input of any depth)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, Mapping) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        # JSON has no infinity: 1e400 would become one, which nothing downstream can store.
        raise ValueError(f"number {text} is out of range")
    return value


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing a body over the size limit (413) before
    reading it whole, a number that overflows to infinity, and a document
    nested deeper than MAX_JSON_DEPTH (400)."""

    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        context = parser_context or {}
        limit = max_body_bytes()
        if limit is not None:
            request = context.get("request")
            declared = _content_length(request.META if request is not None else {})
            if declared is not None and declared > limit:
                raise too_large(declared, limit)
            # The server stops a body at its Content-Length; one byte more
            # than the limit is enough to know it is too long.
            body = stream.read(limit + 1)
            if len(body) > limit:
                raise too_large(declared, limit)
        else:
            body = stream.read()
        encoding = context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = body.decode(encoding)
            data = json.loads(text, parse_constant=strict_constant, parse_float=_finite_float)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply") from None
        if json_depth_exceeds(data, MAX_JSON_DEPTH):
            raise ParseError(f"JSON parse error - the document is nested deeper than {MAX_JSON_DEPTH} levels")
        return data


def _content_length(meta: Mapping[str, Any]) -> int | None:
    try:
        return int(meta.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
