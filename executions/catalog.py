"""Defining what can run: creating and changing packs and actions.

Every write goes through the model's full validation (ref rules, a valid
JSON schema, unique names), so the API, the admin and scripts cannot store
an action the gate or the runners would choke on. A changed limit applies
at once: the post_save signal refills the queue after commit.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from executions.models import Action, Pack, Policy

# Identity fields: an action's ref names its queue, its executions and its
# metrics, so neither it nor what it is made of changes after creation.
PACK_IMMUTABLE = frozenset({"ref"})
ACTION_IMMUTABLE = frozenset({"ref", "pack", "name"})


def _refuse_identity_change(kind: str, instance: Pack | Action, fields: dict[str, Any]) -> None:
    immutable = PACK_IMMUTABLE if isinstance(instance, Pack) else ACTION_IMMUTABLE
    changed = sorted(name for name in immutable & fields.keys() if fields[name] != getattr(instance, name))
    if changed:
        message = f"Cannot be changed once created: it is part of the {kind}'s ref '{instance.ref}'."
        raise ValidationError(dict.fromkeys(changed, message))


def create_pack(**fields: Any) -> Pack:
    """Validate and save a new pack; raises django's ValidationError."""
    pack = Pack(**fields)
    pack.full_clean()
    with transaction.atomic():
        pack.save()
    return pack


def update_pack(pack: Pack, **fields: Any) -> Pack:
    """Change a pack's label, description or default limit."""
    _refuse_identity_change("pack", pack, fields)
    for name, value in fields.items():
        setattr(pack, name, value)
    pack.full_clean()
    with transaction.atomic():
        pack.save()
    return pack


def create_action(*, pack: Pack, name: str, **fields: Any) -> Action:
    """Validate and save a new action ``<pack>.<name>``."""
    action = Action(pack=pack, name=name, **fields)
    # The ref is derived on save; set it now so uniqueness is checked with the rest.
    action.ref = f"{pack.ref}.{name}"
    action.full_clean()
    with transaction.atomic():
        action.save()
    return action


def update_action(action: Action, **fields: Any) -> Action:
    """Change an action's definition or policy (limit, queue length, timeouts)."""
    _refuse_identity_change("action", action, fields)
    for name, value in fields.items():
        setattr(action, name, value)
    action.full_clean()
    with transaction.atomic():
        action.save()
    return action


def create_policy(**fields: Any) -> Policy:
    """Validate and save a new policy; it applies at once (the post_save
    signal refills the queues it covers after commit)."""
    policy = Policy(**fields)
    policy.full_clean()
    with transaction.atomic():
        policy.save()
    return policy


def update_policy(policy: Policy, **fields: Any) -> Policy:
    """Change a policy (its scope and target included); applies at once to
    the queues it covered and those it covers now."""
    for name, value in fields.items():
        setattr(policy, name, value)
    policy.full_clean()
    with transaction.atomic():
        policy.save()
    return policy


def delete_policy(policy: Policy) -> None:
    with transaction.atomic():
        policy.delete()
