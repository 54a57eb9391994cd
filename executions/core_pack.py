"""The built-in `core` pack."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from executions.models import Action, Pack

CORE_ACTIONS: list[dict[str, Any]] = [
    {
        "name": "noop",
        "label": "Do nothing",
        "runner": "python",
        "entrypoint": "workers.core_actions.noop",
        "parameters_schema": {"type": "object", "additionalProperties": False},
    },
    {
        "name": "echo",
        "label": "Echo a message",
        "runner": "python",
        "entrypoint": "workers.core_actions.echo",
        "parameters_schema": {
            "type": "object",
            "properties": {"message": {"type": "string"}},
            "additionalProperties": False,
        },
    },
    {
        "name": "sleep",
        "label": "Sleep",
        "runner": "python",
        "entrypoint": "workers.core_actions.sleep",
        "parameters_schema": {
            "type": "object",
            "properties": {"seconds": {"type": "number", "minimum": 0}},
            "additionalProperties": False,
        },
    },
    {
        "name": "fail",
        "label": "Always fail",
        "runner": "python",
        "entrypoint": "workers.core_actions.fail",
        "parameters_schema": {
            "type": "object",
            "properties": {"message": {"type": "string"}},
            "additionalProperties": False,
        },
    },
    {
        "name": "local",
        "label": "Run a shell command",
        "runner": "shell",
        "entrypoint": "{cmd:raw}",
        "parameters_schema": {
            "type": "object",
            "properties": {"cmd": {"type": "string", "minLength": 1}},
            "required": ["cmd"],
            "additionalProperties": False,
        },
    },
    {
        "name": "http_request",
        "label": "HTTP request",
        "runner": "python",
        "entrypoint": "workers.core_actions.http_request",
        "parameters_schema": {
            "type": "object",
            "properties": {
                "url": {"type": "string", "format": "uri", "minLength": 1},
                "method": {"type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "body": {"type": "string"},
                "timeout": {"type": "number", "exclusiveMinimum": 0},
            },
            "required": ["url"],
            "additionalProperties": False,
        },
    },
]


@transaction.atomic
def load_core_pack() -> list[Action]:
    """Create or update the core pack. Operator-set limits and timeouts are
    kept; definitions (runner, entrypoint, schema) are brought up to date."""
    pack, _ = Pack.objects.get_or_create(
        ref="core", defaults={"label": "Core", "description": "Built-in actions shipped with Attune."}
    )
    actions = []
    for spec in CORE_ACTIONS:
        definition = {key: spec[key] for key in ("label", "runner", "entrypoint", "parameters_schema")}
        action = Action.objects.filter(pack=pack, name=spec["name"]).first()
        if action is None:
            action = Action(pack=pack, name=spec["name"], **definition)
        else:
            for key, value in definition.items():
                setattr(action, key, value)
        action.save()
        actions.append(action)
    return actions
