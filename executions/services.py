"""Requesting and cancelling executions: the calls the API, the admin and
the management commands make."""

from __future__ import annotations

import logging
import signal
from typing import Any

from celery import current_app
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.exceptions import Unresolvable

from executions.exceptions import (
    ActionDisabled,
    ActionNotFound,
    AlreadyTerminal,
    ExecutionNotFound,
    InvalidParameters,
)
from executions.models import TERMINAL_STATUSES, Action, Execution, ExecutionStatus
from queues import dispatch

logger = logging.getLogger(__name__)
S = ExecutionStatus


def get_action(action_ref: str) -> Action:
    try:
        return Action.objects.select_related("pack").get(ref=action_ref)
    except Action.DoesNotExist:
        raise ActionNotFound(f"Action '{action_ref}' not found") from None


def validate_parameters(action: Action, parameters: Any) -> dict[str, Any]:
    """Return the parameters if they satisfy the action's schema, else raise
    InvalidParameters naming the first offending field."""
    if not isinstance(parameters, dict):
        raise InvalidParameters("parameters must be a JSON object", field="parameters")
    # An empty registry: refs resolve within the schema only, nothing is fetched.
    validator = Draft202012Validator(action.parameters_schema or {}, registry=Registry())
    try:
        errors = sorted(validator.iter_errors(parameters), key=lambda e: list(e.absolute_path))
    except Unresolvable as exc:
        # Only a schema stored before refs were checked at definition gets here.
        raise InvalidParameters(
            f"Action '{action.ref}' has a parameters_schema that cannot be used: {exc}", field="parameters"
        ) from None
    if errors:
        first = errors[0]
        path = ".".join(str(part) for part in first.absolute_path)
        if not path and first.validator == "required":
            # jsonschema reports a missing property at the object's level.
            path = str(first.message).split("'")[1] if "'" in first.message else ""
        field = f"parameters.{path}" if path else "parameters"
        raise InvalidParameters(f"{field}: {first.message}", field=field)
    return parameters


def request_execution(action_ref: str, parameters: Any = None) -> Execution:
    """Record an execution and pass it through its action's gate.

    Returns the execution as ``scheduled`` (a slot was free) or ``queued``.
    Raises ActionNotFound, ActionDisabled, InvalidParameters, or QueueFull
    (in which case nothing of the request remains).
    """
    action = get_action(action_ref)
    if not action.enabled:
        raise ActionDisabled(f"Action '{action.ref}' is disabled")
    params = validate_parameters(action, {} if parameters is None else parameters)
    with transaction.atomic():
        execution = Execution.objects.create(action=action, action_ref=action.ref, parameters=params)
        # The gate must never see an execution the database might still roll back.
        transaction.on_commit(lambda: dispatch.admit(execution))
    return execution


def get_execution(execution_id: Any) -> Execution:
    try:
        return Execution.objects.select_related("action__pack").get(pk=execution_id)
    except (Execution.DoesNotExist, ValueError, TypeError, ValidationError):
        # A malformed id cannot name an execution either.
        raise ExecutionNotFound(f"Execution '{execution_id}' not found") from None


def cancel_execution(execution_id: Any) -> Execution:
    """Cancel an execution wherever it is.

    Waiting: it leaves the queue and ends ``cancelled`` at once, its
    neighbours keeping their order. Scheduled or running: it goes to
    ``canceling`` and its worker is told to stop it; the completion listener
    ends it ``cancelled`` and frees its slot once. Raises AlreadyTerminal if
    it has already ended, ExecutionNotFound if there is no such execution.
    """
    execution = get_execution(execution_id)
    for _ in range(3):
        if execution.status in TERMINAL_STATUSES:
            raise AlreadyTerminal(
                f"Execution '{execution.pk}' has already ended with status '{execution.status}'"
            )
        if execution.status == S.CANCELING:
            return execution
        if execution.status in (S.REQUESTED, S.QUEUED):
            if Execution.objects.transition(
                execution.pk,
                S.CANCELLED,
                expected=[S.REQUESTED, S.QUEUED],
                completed_at=timezone.now(),
                error="Cancelled while waiting in the queue.",
            ):
                execution.refresh_from_db()
                if execution.queue_seq is not None:
                    dispatch.withdraw(execution)
                return execution
        elif Execution.objects.transition(execution.pk, S.CANCELING, expected=[S.SCHEDULED, S.RUNNING]):
            if execution.celery_task_id:
                current_app.control.revoke(execution.celery_task_id, terminate=True, signal=signal.SIGTERM)
            execution.refresh_from_db()
            return execution
        # It moved on between our read and our update: look again.
        execution.refresh_from_db()
    raise AlreadyTerminal(f"Execution '{execution.pk}' changed status while being cancelled; try again")
