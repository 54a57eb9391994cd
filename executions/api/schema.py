"""OpenAPI schema generation the drf-spectacular defaults do not cover.

Imported by the views, which registers the extension below.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.plumbing import is_list_serializer
from drf_spectacular.serializers import PolymorphicProxySerializerExtension
from drf_spectacular.utils import PolymorphicProxySerializer


class BoundedPolymorphicProxySerializer(PolymorphicProxySerializer):
    """A PolymorphicProxySerializer whose list alternatives keep their bounds
    (``allow_empty=False``, ``min_length``, ``max_length``) in the schema as
    ``minItems`` and ``maxItems``; drf-spectacular drops them."""


class BoundedPolymorphicProxySerializerExtension(PolymorphicProxySerializerExtension):
    target_class = BoundedPolymorphicProxySerializer
    priority = 0

    def _process_serializer(self, auto_schema: Any, serializer: Any, direction: Any) -> tuple[Any, Any]:
        name, schema = super()._process_serializer(auto_schema, serializer, direction)
        if schema is not None and is_list_serializer(serializer):
            minimum = serializer.min_length or (0 if serializer.allow_empty else 1)
            if minimum:
                schema["minItems"] = minimum
            if serializer.max_length is not None:
                schema["maxItems"] = serializer.max_length
        return name, schema
