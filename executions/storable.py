"""What PostgreSQL can store of a JSON value.

PostgreSQL's text and jsonb types cannot hold the NUL character (U+0000): a
value holding one fails the INSERT with a DataError, after everything else
was checked. Values from outside (API bodies, command arguments) are checked
here first, so the refusal names the field instead.
"""

from __future__ import annotations

from typing import Any

NUL = "\x00"


def nul_path(value: Any, path: str) -> str | None:
    """The path (``path.key[2].key``) of the first string or object key
    holding a NUL character in ``value``, or None if there is none. With
    ``path`` empty the path is relative (``key[2].key``; empty for ``value``
    itself).

    Walks with an explicit stack: a value nested as deep as the JSON parser
    allows must not exhaust Python's recursion limit here.
    """
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                return where
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                if isinstance(key, str) and NUL in key:
                    return where
                children.append((child, f"{where}.{key}" if where else str(key)))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{index}]") for index, child in reversed(list(enumerate(item))))
    return None


REPLACEMENT = "\ufffd"


def storable(value: Any) -> Any:
    """A copy of ``value`` with every NUL in its strings and object keys
    replaced by U+FFFD, the character that stands for one that cannot be
    shown: for storing what an action produced (its output, its error),
    which nobody can send back corrected.

    Walks with an explicit stack, like nul_path.
    """
    if nul_path(value, "") is None:
        return value
    if isinstance(value, str):
        return value.replace(NUL, REPLACEMENT)
    holder: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(value, holder, 0)]
    while stack:
        item, parent, key = stack.pop()
        if isinstance(item, dict):
            copy: dict[str, Any] = {}
            for child_key, child in item.items():
                clean_key = child_key.replace(NUL, REPLACEMENT) if isinstance(child_key, str) else child_key
                copy[clean_key] = None  # keeps the order of the keys
                stack.append((child, copy, clean_key))
            parent[key] = copy
        elif isinstance(item, list):
            items: list[Any] = [None] * len(item)
            stack.extend((child, items, index) for index, child in enumerate(item))
            parent[key] = items
        else:
            parent[key] = item.replace(NUL, REPLACEMENT) if isinstance(item, str) else item
    return holder[0]
