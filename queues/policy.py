"""Which policy applies to an action: its limit and what happens at it, how
its executions split into queues, how long its queue may grow and how long
one may wait.

Each setting is looked up on its own, first found wins:

- concurrency (``concurrency_limit`` with its ``method`` and
  ``parameters``): the action's policies, the action's own
  ``concurrency_limit`` field, the pack's policies, the pack's field, the
  global policies, ``ATTUNE_DEFAULT_CONCURRENCY``; none means unlimited;
- ``max_queue_length`` and ``queue_timeout_seconds``: the action's
  policies, the pack's, the global ones, then the action's own fields
  (which always hold a value, so they are the default);
- rate limits: every enabled policy covering the action that sets one
  applies, each to the action on its own (a pack's or the global rate
  limit counts each action's starts apart: the gate keeps every key of an
  action in one Redis Cluster slot).

Within a scope, of the enabled policies that set the value, the one with
the highest ``priority`` wins (the lowest id among equals). Disabling a
policy makes the next one apply at once: every change of a policy refills
the queues it covers (executions/signals.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Q

from executions.models import Action, Policy, PolicyMethod, PolicyScope
from queues.keys import DEFAULT_GROUP

SCOPES = (PolicyScope.ACTION, PolicyScope.PACK, PolicyScope.GLOBAL)
# A group name longer than this (many or long values) is replaced by a hash
# of it: it is part of every Redis key of the queue and a column of each row.
MAX_GROUP_NAME = 100


def group_of(paths: Iterable[str], parameters: Any) -> str:
    """The queue (group) of an execution with ``parameters`` under a policy
    splitting by ``paths``: the JSON of the values found, each as ``[value]``,
    or ``[]`` where the request has none, so a missing value is a value of
    its own and never equal to any given one (``null`` included). No paths:
    the action's one queue, ``default``."""
    paths = list(paths)
    if not paths:
        return DEFAULT_GROUP
    values: list[list[Any]] = []
    for path in paths:
        node, found = parameters, True
        for part in path.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            else:
                found = False
                break
        values.append([node] if found else [])
    name = json.dumps(values, sort_keys=True, separators=(",", ":"))
    if len(name) > MAX_GROUP_NAME:
        return "sha256:" + hashlib.sha256(name.encode()).hexdigest()[:40]
    return name


@dataclass(frozen=True)
class EffectivePolicy:
    limit: int | None
    # Where the limit comes from: "policy 'x'", "action 'a.b'", "pack 'a'",
    # "ATTUNE_DEFAULT_CONCURRENCY", or "" when unlimited.
    limit_source: str
    method: str
    # The policy whose limit applies, if a policy's does.
    policy_name: str | None
    parameters: tuple[str, ...]
    max_queue_length: int
    queue_timeout_seconds: int
    # (max executions, window in ms) of every enabled policy covering the
    # action that sets one: all of them apply.
    rate_limits: tuple[tuple[int, int], ...] = ()

    @property
    def cancels_at_limit(self) -> bool:
        return self.method == PolicyMethod.CANCEL


def precedence(policy: Policy) -> tuple[int, int, int]:
    """Sort key: action scope first, then pack, then global; within a scope
    the highest priority, then the oldest."""
    return (SCOPES.index(policy.scope), -policy.priority, policy.pk)


def policies_for(action: Action) -> list[Policy]:
    """The enabled policies that cover ``action``, in precedence order."""
    covering = Q(scope=PolicyScope.GLOBAL) | Q(pack_id=action.pack_id) | Q(action_id=action.pk)
    found = Policy.objects.filter(covering, enabled=True)
    return sorted(found, key=precedence)


def _first(policies: Iterable[Policy], scope: str, has: Callable[[Policy], bool]) -> Policy | None:
    return next((policy for policy in policies if policy.scope == scope and has(policy)), None)


def resolve(action: Action, policies: list[Policy] | None = None) -> EffectivePolicy:
    """The policy in force for ``action`` (read with its pack)."""
    policies = policies_for(action) if policies is None else policies
    fields: dict[str, Any] = {
        PolicyScope.ACTION: (action.concurrency_limit, f"action '{action.ref}'"),
        PolicyScope.PACK: (action.pack.concurrency_limit, f"pack '{action.pack.ref}'"),
        PolicyScope.GLOBAL: (settings.ATTUNE_DEFAULT_CONCURRENCY, "ATTUNE_DEFAULT_CONCURRENCY"),
    }
    limit: int | None = None
    source, method, policy_name, parameters = "", PolicyMethod.ENQUEUE, None, ()
    for scope in SCOPES:
        policy = _first(policies, scope, lambda p: p.concurrency_limit is not None)
        if policy is not None:
            limit, source, method = (
                int(policy.concurrency_limit or 0),
                f"policy '{policy.name}'",
                policy.method,
            )
            policy_name, parameters = policy.name, tuple(policy.parameters or ())
            break
        value, name = fields[scope]
        if value is not None:
            limit, source = int(value), name
            break

    def setting(attribute: str, default: int) -> int:
        for scope in SCOPES:
            policy = _first(policies, scope, lambda p: getattr(p, attribute) is not None)
            if policy is not None:
                return int(getattr(policy, attribute))
        return default

    rate_limits = sorted(
        {
            (int(policy.rate_limit_executions), int(policy.rate_limit_window_seconds) * 1000)
            for policy in policies
            if policy.rate_limit_executions is not None and policy.rate_limit_window_seconds is not None
        }
    )
    return EffectivePolicy(
        rate_limits=tuple(rate_limits),
        limit=limit,
        limit_source=source,
        method=method,
        policy_name=policy_name,
        parameters=parameters,
        max_queue_length=setting("max_queue_length", action.max_queue_length),
        queue_timeout_seconds=setting("queue_timeout_seconds", action.queue_timeout_seconds),
    )


def in_force(action: Action) -> dict[str, Any]:
    """What applies to ``action`` and why: the effective settings, and the
    enabled policies covering it in precedence order."""
    covering = policies_for(action)
    effective = resolve(action, covering)
    return {
        "effective": {
            **effective.__dict__,
            "parameters": list(effective.parameters),
            "rate_limits": [
                {"executions": executions, "window_seconds": window_ms / 1000}
                for executions, window_ms in effective.rate_limits
            ],
        },
        "policies": covering,
    }


def resolve_many(actions: Iterable[Action]) -> dict[int, EffectivePolicy]:
    """``resolve`` for many actions with one query, by action id."""
    actions = list(actions)
    enabled = list(Policy.objects.filter(enabled=True))
    ranked = sorted(enabled, key=precedence)
    return {
        action.pk: resolve(
            action,
            [
                policy
                for policy in ranked
                if policy.scope == PolicyScope.GLOBAL
                or policy.pack_id == action.pack_id
                or policy.action_id == action.pk
            ],
        )
        for action in actions
    }


def resolve_limit(action: Action) -> int | None:
    """The concurrency limit in force; None means unlimited: executions are
    granted at once and never wait."""
    return resolve(action).limit


def lease_ms() -> int:
    return int(float(settings.ATTUNE_LEASE_SECONDS) * 1000)
