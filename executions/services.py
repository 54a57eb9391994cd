"""Requesting and cancelling executions: the calls the API, the admin and
the management commands make."""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence
from typing import Any

from celery import current_app
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from jsonschema import Draft202012Validator
from kombu.exceptions import OperationalError as BrokerUnavailable
from referencing import Registry
from referencing.exceptions import Unresolvable

from executions import access, audit
from executions.exceptions import (
    ActionDisabled,
    ActionNotFound,
    AlreadyTerminal,
    ExecutionNotFound,
    InvalidParameters,
)
from executions.models import (
    DEFAULT_PRIORITY,
    MAX_PRIORITY,
    TERMINAL_STATUSES,
    Action,
    AuditKind,
    Execution,
    ExecutionStatus,
)
from executions.storable import NUL, nul_path
from queues import dispatch
from queues.policy import EffectivePolicy, group_of, resolve
from queues.redis_client import UNAVAILABLE_ERRORS

logger = logging.getLogger(__name__)
S = ExecutionStatus
# The most executions one request may ask for: a batch is one transaction
# and one gate step, and both should stay short.
MAX_BATCH = 1000


def get_action(action_ref: str) -> Action:
    """The action of that ref, or ActionNotFound."""
    # No ref holds a NUL (PostgreSQL could not store it), and the driver
    # refuses to send one in a query.
    if NUL in action_ref:
        raise ActionNotFound(f"Action '{action_ref}' not found")
    try:
        return Action.objects.select_related("pack").get(ref=action_ref)
    except Action.DoesNotExist:
        raise ActionNotFound(f"Action '{action_ref}' not found") from None


def _validator(action: Action) -> Draft202012Validator:
    # An empty registry: refs resolve within the schema only, nothing is fetched.
    return Draft202012Validator(action.parameters_schema or {}, registry=Registry())


def validate_parameters(
    action: Action, parameters: Any, validator: Draft202012Validator | None = None
) -> dict[str, Any]:
    """Return the parameters if they satisfy the action's schema, else raise
    InvalidParameters naming the first offending field. ``validator`` is the
    action's, when the caller checks many requests against it."""
    if not isinstance(parameters, dict):
        raise InvalidParameters("parameters must be a JSON object", field="parameters")
    where = nul_path(parameters, "parameters")
    if where is not None:
        raise InvalidParameters(
            f"{where}: must not contain the NUL character (\\u0000): it cannot be stored", field=where
        )
    validator = validator or _validator(action)
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


def request_execution(
    action_ref: str, parameters: Any = None, *, requested_by: Any = None, priority: int = DEFAULT_PRIORITY
) -> Execution:
    """Record an execution and pass it through its action's gate.

    Returns the execution as ``scheduled`` (a slot was free) or ``queued``,
    or ``requested`` if the gate did not answer (see request_executions).
    Raises ActionNotFound, PermissionDenied, ActionDisabled,
    InvalidParameters, or QueueFull (in which case nothing of the request
    remains).
    """
    return request_executions(action_ref, [parameters], requested_by=requested_by, priorities=[priority])[0]


def request_executions(
    action_ref: str,
    parameters_list: Sequence[Any],
    *,
    requested_by: Any = None,
    priorities: Sequence[int] | None = None,
) -> list[Execution]:
    """Record many executions of one action and pass them through its gate
    in list order: one transaction, one gate step, one statement recording
    the outcome. FIFO order is list order.

    ``requested_by`` is the user asking, who must be allowed to run the
    action (executions.access); None is a management command or the
    system, which may run anything. ``priorities`` (0-9, default 5 each):
    within the queue a higher priority starts first, equal ones in order.

    All or nothing: raises ActionNotFound, PermissionDenied, ActionDisabled,
    InvalidParameters (naming the item, ``parameters[3].seconds``, when
    there are several), or QueueFull when the ones that would wait do not
    fit in the queue; in each case no execution of the batch remains.

    The executions are committed before their gate step. If Redis does not
    answer that step, they stay committed as ``requested`` and are returned
    so: the reaper admits them, in request order, once the gate answers
    again (docs/reliability.md). If the broker does not take the messages
    of those granted, they are returned ``scheduled``, and their leases
    bring their messages back. Raising would tell the caller the request
    failed while its executions go on to run, and a retry would run them
    twice.
    """
    if not parameters_list:
        raise InvalidParameters("at least one execution must be requested", field="parameters")
    if len(parameters_list) > MAX_BATCH:
        raise InvalidParameters(
            f"at most {MAX_BATCH} executions may be requested at once, got {len(parameters_list)}",
            field="parameters",
        )
    priorities = list(priorities) if priorities is not None else [DEFAULT_PRIORITY] * len(parameters_list)
    if len(priorities) != len(parameters_list):
        raise InvalidParameters("one priority per requested execution", field="priority")
    for index, priority in enumerate(priorities):
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY:
            field = "priority" if len(priorities) == 1 else f"[{index}].priority"
            raise InvalidParameters(f"{field}: must be an integer from 0 to {MAX_PRIORITY}", field=field)
    action = get_action(action_ref)
    if requested_by is not None:
        access.require_execute(requested_by, action)
    if not action.enabled:
        raise ActionDisabled(f"Action '{action.ref}' is disabled")
    validator = _validator(action)
    checked = []
    for index, parameters in enumerate(parameters_list):
        try:
            checked.append(validate_parameters(action, {} if parameters is None else parameters, validator))
        except InvalidParameters as exc:
            if len(parameters_list) == 1:
                raise
            field = (exc.field or "parameters").replace("parameters", f"parameters[{index}]", 1)
            message = exc.message.replace(exc.field, field, 1) if exc.field else f"{field}: {exc.message}"
            raise InvalidParameters(message, field=field) from None
    requester = requested_by if requested_by is not None and requested_by.is_authenticated else None
    policy = resolve(action)
    executions = [
        Execution(
            action=action,
            action_ref=action.ref,
            parameters=params,
            requested_by=requester,
            priority=priority,
            queue_group=group_of(policy.parameters, params),
        )
        for params, priority in zip(checked, priorities, strict=True)
    ]
    with transaction.atomic():
        Execution.objects.bulk_create(executions)
        # The gate must never see an execution the database might still roll back.
        transaction.on_commit(lambda: _admit_unless_gate_away(executions, action, policy))
    return executions


def _admit_unless_gate_away(executions: list[Execution], action: Action, policy: EffectivePolicy) -> None:
    try:
        dispatch.admit(executions, action, policy)
    except (*UNAVAILABLE_ERRORS, BrokerUnavailable) as exc:
        logger.warning(
            "admitting %d executions of action %s failed after their commit (%s: %s); "
            "the reaper takes them on once Redis and the broker answer",
            len(executions),
            action.ref,
            type(exc).__name__,
            exc,
        )


def get_execution(execution_id: Any, *, user: Any = None) -> Execution:
    """The execution, if ``user`` (when given) may read it; else
    ExecutionNotFound, the same as for an id that names nothing, so ids of
    others' executions tell nothing."""
    try:
        execution = Execution.objects.select_related("action__pack", "requested_by", "cancelled_by").get(
            pk=execution_id
        )
    except (Execution.DoesNotExist, ValueError, TypeError, ValidationError):
        # A malformed id cannot name an execution either.
        raise ExecutionNotFound(f"Execution '{execution_id}' not found") from None
    if user is not None and not access.may_read(user, execution):
        raise ExecutionNotFound(f"Execution '{execution_id}' not found")
    return execution


def list_executions(user: Any) -> Any:
    """The executions ``user`` may read, newest first."""
    queryset = Execution.objects.select_related("requested_by", "cancelled_by").order_by("-created")
    return access.readable_executions(user, queryset)


def _cancelled(execution: Execution, before: str, by: Any) -> None:
    audit.record(
        AuditKind.EXECUTION_CANCELLED,
        str(execution.pk),
        before={"status": before},
        after={"status": execution.status, "action": execution.action_ref},
        actor=by,
    )


def cancel_execution(execution_id: Any, *, by: Any = None) -> Execution:
    """Cancel an execution wherever it is.

    Waiting: it leaves the queue and ends ``cancelled`` at once, its
    neighbours keeping their order. Scheduled or running: it goes to
    ``canceling`` and its worker is told to stop it; the completion listener
    ends it ``cancelled`` and frees its slot once. Raises AlreadyTerminal if
    it has already ended, ExecutionNotFound if there is no such execution
    (or ``by`` may not see it), PermissionDenied if ``by`` may see it but
    not cancel it. ``by`` None is a command or the system.
    """
    execution = get_execution(execution_id, user=by)
    if by is not None:
        access.require_cancel(by, execution)
    canceller_id = by.pk if by is not None and by.is_authenticated else None
    for _ in range(3):
        if execution.status in TERMINAL_STATUSES:
            raise AlreadyTerminal(
                f"Execution '{execution.pk}' has already ended with status '{execution.status}'"
            )
        if execution.status == S.CANCELING:
            return execution
        before = execution.status
        if before in (S.REQUESTED, S.QUEUED):
            with transaction.atomic():
                cancelled = Execution.objects.transition(
                    execution.pk,
                    S.CANCELLED,
                    expected=[S.REQUESTED, S.QUEUED],
                    completed_at=timezone.now(),
                    error="Cancelled while waiting in the queue.",
                    cancelled_by_id=canceller_id,
                )
                if cancelled:
                    execution.refresh_from_db()
                    _cancelled(execution, before, by)
            if cancelled:
                if execution.queue_seq is not None:
                    dispatch.withdraw(execution)
                return execution
        else:
            with transaction.atomic():
                canceling = Execution.objects.transition(
                    execution.pk, S.CANCELING, expected=[S.SCHEDULED, S.RUNNING], cancelled_by_id=canceller_id
                )
                if canceling:
                    execution.refresh_from_db()
                    _cancelled(execution, before, by)
            if canceling:
                if execution.celery_task_id:
                    current_app.control.revoke(
                        execution.celery_task_id, terminate=True, signal=signal.SIGTERM
                    )
                return execution
        # It moved on between our read and our update: look again.
        execution.refresh_from_db()
    raise AlreadyTerminal(f"Execution '{execution.pk}' changed status while being cancelled; try again")
