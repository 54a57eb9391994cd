"""Defining what can run: creating and changing packs and actions.

Every write goes through the model's full validation (ref rules, a valid
JSON schema, unique names), so the API, the admin and scripts cannot store
an action the gate or the runners would choke on. A changed limit applies
at once: the post_save signal refills the queue after commit.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction

from executions.exceptions import AlreadyExists, ImmutableField
from executions.models import Action, Pack, Policy, PolicyScope

# Identity fields: an action's ref names its queue, its executions and its
# metrics, so neither it nor what it is made of changes after creation.
PACK_IMMUTABLE = frozenset({"ref"})
ACTION_IMMUTABLE = frozenset({"ref", "pack", "name"})
# What full_clean() reports when the ref (or an action's pack and name) is taken.
UNIQUE_CODES = frozenset({"unique", "unique_together"})


def _refuse_identity_change(kind: str, instance: Pack | Action, fields: dict[str, Any]) -> None:
    """Raise ImmutableField naming the first identity field ``fields`` would change."""
    immutable = PACK_IMMUTABLE if isinstance(instance, Pack) else ACTION_IMMUTABLE
    changed = sorted(name for name in immutable & fields.keys() if fields[name] != getattr(instance, name))
    if changed:
        message = f"Cannot be changed once created: it is part of the {kind}'s ref '{instance.ref}'."
        raise ImmutableField(f"{changed[0]}: {message}", field=changed[0])


def _full_clean(kind: str, instance: Pack | Action | Policy) -> None:
    """full_clean(), except that a taken ref is AlreadyExists (a conflict with
    what is stored, not a malformed request) when it is the only problem."""
    try:
        instance.full_clean()
    except ValidationError as exc:
        errors = exc.error_dict if hasattr(exc, "error_dict") else {NON_FIELD_ERRORS: exc.error_list}
        codes = {error.code for field_errors in errors.values() for error in field_errors}
        if codes and codes <= UNIQUE_CODES:
            name = instance.name if isinstance(instance, Policy) else instance.ref
            raise AlreadyExists(f"{kind.capitalize()} '{name}' already exists") from None
        raise


def create_pack(**fields: Any) -> Pack:
    """Validate and save a new pack; raises django's ValidationError, or
    AlreadyExists when the ref is taken."""
    pack = Pack(**fields)
    _full_clean("pack", pack)
    with transaction.atomic():
        pack.save()
    return pack


def update_pack(pack: Pack, **fields: Any) -> Pack:
    """Change a pack's label, description or default limit; raises
    ImmutableField if ``fields`` would change its ref."""
    _refuse_identity_change("pack", pack, fields)
    for name, value in fields.items():
        setattr(pack, name, value)
    _full_clean("pack", pack)
    with transaction.atomic():
        pack.save()
    return pack


def create_action(*, pack: Pack, name: str, **fields: Any) -> Action:
    """Validate and save a new action ``<pack>.<name>``; raises django's
    ValidationError, or AlreadyExists when the pack has an action of that name."""
    action = Action(pack=pack, name=name, **fields)
    # The ref is derived on save; set it now so uniqueness is checked with the rest.
    action.ref = f"{pack.ref}.{name}"
    _full_clean("action", action)
    with transaction.atomic():
        action.save()
    return action


def update_action(action: Action, **fields: Any) -> Action:
    """Change an action's definition or policy (limit, queue length, timeouts);
    raises ImmutableField if ``fields`` would change its pack or name."""
    _refuse_identity_change("action", action, fields)
    for name, value in fields.items():
        setattr(action, name, value)
    _full_clean("action", action)
    with transaction.atomic():
        action.save()
    return action


def create_policy(**fields: Any) -> Policy:
    """Validate and save a new policy; it applies at once (the post_save
    signal refills the queues it covers after commit). Raises django's
    ValidationError, or AlreadyExists when the name is taken."""
    policy = Policy(**fields)
    _full_clean("policy", policy)
    with transaction.atomic():
        policy.save()
    return policy


def update_policy(policy: Policy, **fields: Any) -> Policy:
    """Change a policy (its scope and target included); applies at once to
    the queues it covered and those it covers now."""
    for name, value in fields.items():
        setattr(policy, name, value)
    _full_clean("policy", policy)
    with transaction.atomic():
        policy.save()
    return policy


def delete_policy(policy: Policy) -> None:
    with transaction.atomic():
        policy.delete()


def actions_covered(scope: str | None, pack_id: int | None, action_id: int | None) -> set[int]:
    """The ids of the actions a policy of ``scope`` on that pack or action
    covers (every action for a global one)."""
    if scope == PolicyScope.ACTION and action_id is not None:
        return {action_id}
    if scope == PolicyScope.PACK and pack_id is not None:
        return set(Action.objects.filter(pack_id=pack_id).values_list("pk", flat=True))
    if scope == PolicyScope.GLOBAL:
        return set(Action.objects.values_list("pk", flat=True))
    return set()
