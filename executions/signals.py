"""A concurrency limit changed at runtime applies at once: raising it
admits the waiting heads immediately, in order."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from executions.models import Action, Pack


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
