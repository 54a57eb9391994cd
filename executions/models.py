"""Packs, actions and executions: what can run, and each request to run it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from executions.exceptions import IllegalTransition
from executions.storable import nul_path

PACK_REF_VALIDATOR = RegexValidator(
    r"^[a-z0-9_]+$", "A pack ref may hold only lowercase letters, digits and '_'."
)
ACTION_NAME_VALIDATOR = RegexValidator(
    r"^[a-z0-9_]+$", "An action name may hold only lowercase letters, digits and '_'."
)
# PostgreSQL's integer, stated on the fields so every database (SQLite's go
# to 2**63) refuses the same values, with the field's name, before any INSERT.
MAX_INTEGER = 2_147_483_647
# The longest run an action may be given. A shell action's wait is counted in
# milliseconds in a C int, so past 24.8 days it fails at once (OverflowError);
# a week is longer than any run a worker should hold a slot for.
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600


class Pack(models.Model):
    ref = models.CharField(max_length=100, unique=True, validators=[PACK_REF_VALIDATOR])
    label = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    concurrency_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_INTEGER)],
        help_text="Default limit for the pack's actions; empty falls back to the global default.",
    )

    class Meta:
        ordering = ["ref"]

    def __str__(self) -> str:
        return self.ref


class Runner(models.TextChoices):
    PYTHON = "python", "Python callable"
    SHELL = "shell", "Shell command"


class Action(models.Model):
    ref = models.CharField(max_length=201, unique=True, editable=False)
    pack = models.ForeignKey(Pack, on_delete=models.CASCADE, related_name="actions")
    name = models.CharField(max_length=100, validators=[ACTION_NAME_VALIDATOR])
    label = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    runner = models.CharField(max_length=20, choices=Runner.choices)
    entrypoint = models.TextField(
        help_text="python: dotted path to a callable; shell: a command template "
        "with {param} placeholders (values are shell-quoted)."
    )
    parameters_schema = models.JSONField(default=dict, blank=True)
    timeout_seconds = models.PositiveIntegerField(
        default=600, validators=[MinValueValidator(1), MaxValueValidator(MAX_TIMEOUT_SECONDS)]
    )
    enabled = models.BooleanField(default=True)
    celery_queue = models.CharField(max_length=100, default="default")
    concurrency_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_INTEGER)],
        help_text="At most this many executions run at once; empty falls back to the pack.",
    )
    max_queue_length = models.PositiveIntegerField(
        default=10000, validators=[MinValueValidator(1), MaxValueValidator(MAX_INTEGER)]
    )
    queue_timeout_seconds = models.PositiveIntegerField(
        default=3600, validators=[MinValueValidator(1), MaxValueValidator(MAX_INTEGER)]
    )

    class Meta:
        ordering = ["ref"]
        constraints = [
            models.UniqueConstraint(fields=["pack", "name"], name="action_unique_name_in_pack"),
        ]

    def __str__(self) -> str:
        return self.ref

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.ref = f"{self.pack.ref}.{self.name}"
        super().save(*args, **kwargs)

    def clean(self) -> None:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        where = nul_path(self.parameters_schema, "")
        if where is not None:
            at = f" (at {where})" if where else ""
            message = f"Must not contain the NUL character (\\u0000){at}: it cannot be stored"
            raise ValidationError({"parameters_schema": message})
        try:
            Draft202012Validator.check_schema(self.parameters_schema or {})
        except SchemaError as exc:
            raise ValidationError({"parameters_schema": f"Not a valid JSON schema: {exc.message}"}) from exc
        unresolvable = unresolvable_ref(self.parameters_schema or {})
        if unresolvable is not None:
            raise ValidationError(
                {
                    "parameters_schema": f"Not a usable JSON schema: $ref '{unresolvable}' does not resolve "
                    "within the schema (references to other documents are not fetched)"
                }
            )


def _refs(schema: Any) -> Iterable[str]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _refs(item)


def unresolvable_ref(schema: Any) -> str | None:
    """The first $ref of ``schema`` that does not resolve inside it, if any.

    Validation resolves refs only within the schema: fetching a URL named by
    a schema would let whoever defines an action make the server fetch it,
    and an unresolvable ref would fail every request of the action.
    """
    from referencing import Registry
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012

    if not isinstance(schema, dict):
        return None
    resolver = Registry().resolver_with_root(DRAFT202012.create_resource(schema))
    for ref in _refs(schema):
        try:
            resolver.lookup(ref)
        except Unresolvable:
            return ref
    return None


POLICY_NAME_VALIDATOR = RegexValidator(
    r"^[a-z0-9_.-]+$", "A policy name may hold only lowercase letters, digits, '_', '.' and '-'."
)
PARAMETER_PATH_VALIDATOR = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$")
# More than a few keys would make a queue per combination of many values:
# rarely meant, and each group is a queue to watch.
MAX_POLICY_PARAMETERS = 5
MAX_LIMIT = 1_000_000


class PolicyScope(models.TextChoices):
    GLOBAL = "global"
    PACK = "pack"
    ACTION = "action"


class PolicyMethod(models.TextChoices):
    ENQUEUE = "enqueue", "wait in the FIFO queue"
    CANCEL = "cancel", "end cancelled at once"


class Policy(models.Model):
    """How executions of an action are let through: at most N at once
    (waiting in FIFO, or cancelled at once, at the limit), a queue per
    combination of parameter values, a queue length and waiting time.

    Precedence (queues/policy.py): for each setting, the action's policies,
    then its pack's, then the global ones; within a scope, the enabled
    policy with the highest ``priority`` that sets it.
    """

    name = models.CharField(max_length=100, unique=True, validators=[POLICY_NAME_VALIDATOR])
    description = models.TextField(blank=True)
    scope = models.CharField(max_length=10, choices=PolicyScope.choices)
    pack = models.ForeignKey(Pack, on_delete=models.CASCADE, null=True, blank=True, related_name="policies")
    action = models.ForeignKey(
        Action, on_delete=models.CASCADE, null=True, blank=True, related_name="policies"
    )
    enabled = models.BooleanField(default=True)
    priority = models.IntegerField(
        default=0, help_text="Of the policies of one scope that set a value, the highest priority wins."
    )
    concurrency_limit = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(MAX_LIMIT)]
    )
    method = models.CharField(
        max_length=10,
        choices=PolicyMethod.choices,
        default=PolicyMethod.ENQUEUE,
        help_text="At the limit: enqueue (wait in FIFO order) or cancel (end cancelled at once).",
    )
    parameters = models.JSONField(
        default=list,
        blank=True,
        help_text="Parameter names or dot-paths; each combination of their values is a queue of its own, "
        "with its own limit and FIFO order.",
    )
    rate_limit_executions = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_LIMIT)],
        help_text="At most this many starts of each action covered in any rate_limit_window_seconds.",
    )
    rate_limit_window_seconds = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(86400)]
    )
    max_queue_length = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(MAX_LIMIT)]
    )
    queue_timeout_seconds = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(30 * 86400)]
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["scope", "-priority", "pk"]
        verbose_name_plural = "policies"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(scope="global", pack__isnull=True, action__isnull=True)
                | models.Q(scope="pack", pack__isnull=False, action__isnull=True)
                | models.Q(scope="action", pack__isnull=True, action__isnull=False),
                name="policy_scope_matches_target",
                violation_error_message="A global policy names no pack or action, a pack policy its pack, "
                "an action policy its action.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def target(self) -> str:
        if self.scope == PolicyScope.ACTION:
            return f"action {self.action}"
        if self.scope == PolicyScope.PACK:
            return f"pack {self.pack}"
        return "every action"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.scope == PolicyScope.GLOBAL and (self.pack_id or self.action_id):
            errors["scope"] = "A global policy applies to every action: leave pack and action empty."
        if self.scope == PolicyScope.PACK:
            if not self.pack_id:
                errors["pack"] = "A pack policy names its pack."
            if self.action_id:
                errors["action"] = "A pack policy names no action."
        if self.scope == PolicyScope.ACTION:
            if not self.action_id:
                errors["action"] = "An action policy names its action."
            if self.pack_id:
                errors["pack"] = "An action policy names no pack (its action's pack is implied)."
        if self.method == PolicyMethod.CANCEL and self.concurrency_limit is None:
            errors["method"] = "method 'cancel' acts at the concurrency limit: set concurrency_limit."
        problem = self._parameters_problem()
        if problem:
            errors["parameters"] = problem
        elif self.parameters and self.concurrency_limit is None:
            errors["parameters"] = "A queue per parameter value needs a concurrency_limit for each."
        if (self.rate_limit_executions is None) != (self.rate_limit_window_seconds is None):
            errors["rate_limit_executions"] = (
                "A rate limit is rate_limit_executions per rate_limit_window_seconds: set both or neither."
            )
        if not errors and all(
            value is None
            for value in (
                self.concurrency_limit,
                self.rate_limit_executions,
                self.max_queue_length,
                self.queue_timeout_seconds,
            )
        ):
            errors["concurrency_limit"] = (
                "A policy must set something: concurrency_limit, a rate limit, max_queue_length "
                "or queue_timeout_seconds."
            )
        if errors:
            raise ValidationError(errors)

    def _parameters_problem(self) -> str | None:
        names = self.parameters
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            return 'A list of parameter names or dot-paths, e.g. ["host"] or ["target.host"].'
        if len(names) > MAX_POLICY_PARAMETERS:
            return f"At most {MAX_POLICY_PARAMETERS} parameters, got {len(names)}."
        if len(set(names)) != len(names):
            return "Each parameter at most once."
        bad = next((name for name in names if not PARAMETER_PATH_VALIDATOR.match(name)), None)
        if bad is not None:
            return f"'{bad}' is not a parameter name or dot-path (letters, digits, '_', '-', dots between)."
        if self.scope == PolicyScope.ACTION and self.action_id and names:
            properties = (self.action.parameters_schema or {}).get("properties")
            if isinstance(properties, dict):
                unknown = [name for name in names if name.split(".")[0] not in properties]
                if unknown:
                    known = ", ".join(sorted(properties)) or "none"
                    return (
                        f"Not a parameter of action '{self.action.ref}': {', '.join(unknown)} "
                        f"(its schema has: {known})."
                    )
        return None


MAX_PRIORITY = 9
DEFAULT_PRIORITY = 5


class ExecutionStatus(models.TextChoices):
    REQUESTED = "requested"
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    CANCELING = "canceling"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"


S = ExecutionStatus
TERMINAL_STATUSES = frozenset({S.COMPLETED, S.FAILED, S.TIMEOUT, S.CANCELLED, S.ABANDONED})
WAITING_STATUSES = frozenset({S.REQUESTED, S.QUEUED})
# Statuses that hold a slot in the gate.
ACTIVE_STATUSES = frozenset({S.SCHEDULED, S.RUNNING, S.CANCELING})

# The one place that says which status may follow which.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.REQUESTED: frozenset({S.QUEUED, S.SCHEDULED, S.CANCELLED, S.TIMEOUT}),
    S.QUEUED: frozenset({S.SCHEDULED, S.CANCELLED, S.TIMEOUT}),
    # A scheduled execution whose task never started goes back to the queue.
    S.SCHEDULED: frozenset({S.RUNNING, S.QUEUED, S.CANCELING, S.CANCELLED, S.ABANDONED, S.TIMEOUT, S.FAILED}),
    S.RUNNING: frozenset({S.COMPLETED, S.FAILED, S.TIMEOUT, S.CANCELING, S.ABANDONED}),
    S.CANCELING: frozenset({S.CANCELLED, S.ABANDONED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.TIMEOUT: frozenset(),
    S.CANCELLED: frozenset(),
    S.ABANDONED: frozenset(),
}


def check_transition(current: str, new: str) -> None:
    """Raise IllegalTransition unless `new` may follow `current`."""
    if new not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(f"An execution cannot go from '{current}' to '{new}'.")


def checked_sources(new: str, expected: Iterable[str] | None) -> list[str]:
    """The statuses a conditional update to ``new`` may start from:
    ``expected`` (default: every status that may precede it). Raises
    IllegalTransition if ``expected`` names a move the machine forbids."""
    sources = list(expected) if expected is not None else sources_of(new)
    for source in sources:
        check_transition(source, new)
    return sources


def sources_of(new: str) -> list[str]:
    """Every status from which `new` may be reached, for conditional updates."""
    return sorted(status for status, targets in TRANSITIONS.items() if new in targets)


# What a worker and the gate read of an execution on the hot path: no
# result or error, which can be large and are decoded for nothing.
RUN_FIELDS = (
    "id",
    "action",
    "action_ref",
    "parameters",
    "status",
    "created",
    "enqueued_at",
    "scheduled_at",
    "started_at",
    "completed_at",
    "worker",
    "celery_task_id",
    "queue_seq",
    "grant_seq",
    "queue_group",
)


class ExecutionQuerySet(models.QuerySet["Execution"]):
    def transition(
        self,
        execution_id: Any,
        new_status: str,
        *,
        expected: Iterable[str] | None = None,
        where: dict[str, Any] | None = None,
        durable: bool = True,
        **fields: Any,
    ) -> bool:
        """Move one execution to ``new_status`` if it is in one of
        ``expected`` (default: every status that may precede it) and it
        matches ``where`` (e.g. the Celery task id of the current grant).

        A conditional UPDATE, so of two racing callers exactly one wins;
        returns whether this call made the change. Raises IllegalTransition
        if ``expected`` names a move the state machine forbids.
        ``durable=False``: see executions.bulk.update_returning.
        """
        sources = checked_sources(new_status, expected)
        # QuerySet.update() skips auto_now, so stamp it here.
        fields.setdefault("updated", timezone.now())
        if self.db != "default" or self.query.where:
            rows = self.filter(pk=execution_id, status__in=sources, **(where or {}))
            return rows.update(status=new_status, **fields) == 1
        from executions import bulk

        # On the hot path (every grant): the same UPDATE without building a
        # query each time.
        changed = bulk.update_returning(
            Execution,
            execution_id,
            fields=fields,
            where=where or {},
            status_in=sources,
            status_sql=("%s", [new_status]),
            returning=("id",),
            durable=durable,
        )
        return changed is not None

    def transition_returning(
        self,
        execution_id: Any,
        new_status: str,
        *,
        expected: Iterable[str],
        where: dict[str, Any] | None = None,
        canceling_becomes: str | None = None,
        **fields: Any,
    ) -> Execution | None:
        """``transition`` in one statement that also returns the changed
        execution, or None if it did not change. With ``canceling_becomes``,
        an execution being cancelled (``canceling``) moves to that status
        instead of ``new_status``.

        Loaded are the fields a run and its release need (RUN_FIELDS);
        reading another queries it. The action is not read: the hot path
        takes it from queues.action_cache.
        """
        from executions import bulk

        sources = checked_sources(new_status, expected)
        status_sql: tuple[str, list[Any]] = ("%s", [new_status])
        if canceling_becomes is not None:
            check_transition(S.CANCELING, canceling_becomes)
            sources.append(S.CANCELING)
            status_sql = (
                "CASE WHEN status = %s THEN %s ELSE %s END",
                [S.CANCELING, canceling_becomes, new_status],
            )
        fields.setdefault("updated", timezone.now())
        found = bulk.update_returning(
            Execution,
            execution_id,
            fields=fields,
            where=where or {},
            status_in=sources,
            status_sql=status_sql,
            returning=RUN_FIELDS,
        )
        if found is None:
            return None
        execution = found[0]
        assert isinstance(execution, Execution)
        return execution

    def transition_many(
        self, changes: list[tuple[Any, str, dict[str, Any]]], *, expected: Iterable[str]
    ) -> set[str]:
        """Apply many transitions in one statement: each change is
        (execution id, new status, fields), every one with the same field
        names, made only where the status is one of ``expected``. Returns the
        ids (as str) that changed."""
        from executions import bulk

        sources = list(expected)
        for _, new_status, _ in changes:
            checked_sources(new_status, sources)
        rows = [(pk, {"status": new_status, **fields}) for pk, new_status, fields in changes]
        return bulk.update_many(Execution, rows, status_in=sources, shared={"updated": timezone.now()})


class Execution(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Every UPDATE of an execution that changes its status writes a new
    # entry into each of its indexes, and each execution is updated three
    # times on its way: so no index that another one covers. The action's
    # foreign key is served by the (action, ...) indexes below, the ref by
    # (action_ref, created), and the task id is only ever read with the
    # primary key.
    action = models.ForeignKey(Action, on_delete=models.PROTECT, related_name="executions", db_index=False)
    action_ref = models.CharField(max_length=201)
    parameters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=ExecutionStatus.choices, default=S.REQUESTED)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    updated = models.DateTimeField(auto_now=True)
    worker = models.CharField(max_length=255, blank=True)
    celery_task_id = models.CharField(max_length=255, blank=True)
    # Position in the action's request order, given by the gate at admission.
    queue_seq = models.BigIntegerField(null=True, blank=True)
    # Order in which the gate granted slots; equals queue_seq order under FIFO.
    grant_seq = models.BigIntegerField(null=True, blank=True)
    queue_group = models.CharField(max_length=200, default="default")
    # Within its queue, a higher priority starts first; equal ones in FIFO order.
    priority = models.PositiveSmallIntegerField(
        default=DEFAULT_PRIORITY, validators=[MaxValueValidator(MAX_PRIORITY)]
    )
    # Who asked for it and who stopped it; empty when a management command
    # or the system did (a queue timeout, a purge has its own audit entry).
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )

    objects = ExecutionQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        indexes = [
            models.Index(fields=["action", "status"], name="execution_action_status"),
            models.Index(fields=["action", "queue_seq"], name="execution_action_seq"),
            models.Index(fields=["status", "updated"], name="execution_status_updated"),
            models.Index(fields=["action_ref", "created"], name="execution_ref_created"),
        ]

    def __str__(self) -> str:
        return f"{self.action_ref} {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class GrantPermission(models.TextChoices):
    # Each of execute and cancel includes read: a user may see what they may act on.
    READ = "read", "read executions"
    EXECUTE = "execute", "request executions"
    CANCEL = "cancel", "cancel anyone's executions"


class Grant(models.Model):
    """Lets a user or a group read, request or cancel the executions of one
    action, or of every action of a pack (present and future)."""

    permission = models.CharField(max_length=10, choices=GrantPermission.choices)
    pack = models.ForeignKey(Pack, on_delete=models.CASCADE, null=True, blank=True, related_name="grants")
    action = models.ForeignKey(Action, on_delete=models.CASCADE, null=True, blank=True, related_name="grants")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="attune_grants",
    )
    group = models.ForeignKey(
        "auth.Group", on_delete=models.CASCADE, null=True, blank=True, related_name="attune_grants"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(pack__isnull=False, action__isnull=True)
                | models.Q(pack__isnull=True, action__isnull=False),
                name="grant_one_pack_or_action",
                violation_error_message="A grant names either a pack or an action, not both.",
            ),
            models.CheckConstraint(
                condition=models.Q(user__isnull=False, group__isnull=True)
                | models.Q(user__isnull=True, group__isnull=False),
                name="grant_one_user_or_group",
                violation_error_message="A grant is given to either a user or a group, not both.",
            ),
            models.UniqueConstraint(
                fields=["permission", "pack", "action", "user", "group"],
                name="grant_unique",
                nulls_distinct=False,
                violation_error_message="This grant exists already.",
            ),
        ]

    def __str__(self) -> str:
        scope = f"action {self.action}" if self.action_id else f"pack {self.pack}.*"
        holder = f"user {self.user}" if self.user_id else f"group {self.group}"
        return f"{self.permission} on {scope} to {holder}"


class AuditKind(models.TextChoices):
    PACK_CREATED = "pack.created"
    PACK_CHANGED = "pack.changed"
    PACK_DELETED = "pack.deleted"
    ACTION_CREATED = "action.created"
    ACTION_CHANGED = "action.changed"
    ACTION_DELETED = "action.deleted"
    POLICY_CREATED = "policy.created"
    POLICY_CHANGED = "policy.changed"
    POLICY_DELETED = "policy.deleted"
    GRANT_CREATED = "grant.created"
    GRANT_CHANGED = "grant.changed"
    GRANT_DELETED = "grant.deleted"
    EXECUTION_CANCELLED = "execution.cancelled"
    QUEUE_PURGED = "queue.purged"


class AuditEntry(models.Model):
    """One change to what runs, who may run it, or what waits: who, when,
    where from, and the fields before and after."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    # Kept as a name too: the entry outlives the account.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    source = models.CharField(max_length=20, help_text="api, admin, dashboard or command")
    kind = models.CharField(max_length=30, choices=AuditKind.choices)
    target = models.CharField(max_length=255, help_text="The ref or id of what changed.")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["kind", "at"], name="audit_kind_at")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name or '-'} {self.kind} {self.target}"
