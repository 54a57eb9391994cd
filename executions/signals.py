"""A concurrency limit changed at runtime applies at once: raising it
admits the waiting heads immediately, in order. And every change to a
pack, an action or a grant lands in the audit trail."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Model
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from executions import audit, catalog
from executions.models import Action, AuditKind, Grant, Pack, Policy

AUDITED: dict[type[Model], tuple[str, str, str]] = {
    Pack: (AuditKind.PACK_CREATED, AuditKind.PACK_CHANGED, AuditKind.PACK_DELETED),
    Action: (AuditKind.ACTION_CREATED, AuditKind.ACTION_CHANGED, AuditKind.ACTION_DELETED),
    Grant: (AuditKind.GRANT_CREATED, AuditKind.GRANT_CHANGED, AuditKind.GRANT_DELETED),
    Policy: (AuditKind.POLICY_CREATED, AuditKind.POLICY_CHANGED, AuditKind.POLICY_DELETED),
}


def _target(instance: Model) -> str:
    if isinstance(instance, Pack | Action):
        return str(instance.ref)
    if isinstance(instance, Policy):
        return instance.name
    return f"{instance} (#{instance.pk})"


def _refill_policy_change(instance: Policy, before: tuple[str | None, int | None, int | None] | None) -> None:
    from queues.dispatch import refill_actions

    action_ids = catalog.actions_covered(instance.scope, instance.pack_id, instance.action_id)
    if before is not None:
        # A policy moved to another target stops applying to its old one.
        action_ids |= catalog.actions_covered(*before)
    transaction.on_commit(lambda: refill_actions(sorted(action_ids)))


@receiver(pre_save, sender=Policy, dispatch_uid="attune.policy_target_before")
def remember_policy_target(sender: type[Policy], instance: Policy, **kwargs: Any) -> None:
    stored = None
    if instance.pk is not None:
        stored = Policy.objects.filter(pk=instance.pk).values_list("scope", "pack_id", "action_id").first()
    instance._target_before = stored  # type: ignore[attr-defined]


@receiver(post_save, sender=Policy, dispatch_uid="attune.refill_policy")
def refill_after_policy_change(sender: type[Policy], instance: Policy, **kwargs: Any) -> None:
    _refill_policy_change(instance, getattr(instance, "_target_before", None))


@receiver(post_delete, sender=Policy, dispatch_uid="attune.refill_policy_delete")
def refill_after_policy_delete(sender: type[Policy], instance: Policy, **kwargs: Any) -> None:
    _refill_policy_change(instance, None)


def remember_before_change(sender: type[Model], instance: Model, **kwargs: Any) -> None:
    if instance.pk is not None and not kwargs.get("raw"):
        stored = sender._default_manager.filter(pk=instance.pk).first()
        instance._audit_before = None if stored is None else audit.snapshot(stored)  # type: ignore[attr-defined]


def audit_save(sender: type[Model], instance: Model, created: bool, **kwargs: Any) -> None:
    if kwargs.get("raw"):
        return
    created_kind, changed_kind, _ = AUDITED[sender]
    after = audit.snapshot(instance)
    before = getattr(instance, "_audit_before", None)
    if created or before is None:
        audit.record(created_kind, _target(instance), after=after)
        return
    before, after = audit.changed_fields(before, after)
    if after:
        audit.record(changed_kind, _target(instance), before=before, after=after)


def audit_delete(sender: type[Model], instance: Model, **kwargs: Any) -> None:
    audit.record(AUDITED[sender][2], _target(instance), before=audit.snapshot(instance))


for _model in AUDITED:
    pre_save.connect(
        remember_before_change, sender=_model, dispatch_uid=f"attune.audit_before.{_model.__name__}"
    )
    post_save.connect(audit_save, sender=_model, dispatch_uid=f"attune.audit_save.{_model.__name__}")
    post_delete.connect(audit_delete, sender=_model, dispatch_uid=f"attune.audit_delete.{_model.__name__}")


@receiver(post_save, sender=Action, dispatch_uid="attune.refill_action")
def refill_after_action_change(sender: type[Action], instance: Action, created: bool, **kwargs: Any) -> None:
    if not created:
        from queues.dispatch import refill_actions

        transaction.on_commit(lambda: refill_actions([instance.pk]))


@receiver(post_save, sender=Pack, dispatch_uid="attune.refill_pack")
def refill_after_pack_change(sender: type[Pack], instance: Pack, created: bool, **kwargs: Any) -> None:
    if not created:
        from queues.dispatch import refill_actions

        action_ids = list(instance.actions.values_list("pk", flat=True))
        transaction.on_commit(lambda: refill_actions(action_ids))
