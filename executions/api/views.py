"""Packs, actions and executions over HTTP. Each view parses, authorises and
calls one service; domain errors become HTTP statuses in attune.api_errors."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status
from rest_framework.decorators import action as route
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from executions import catalog, services
from executions.api.filters import ActionFilter, AuditFilter, ExecutionFilter
from executions.api.permissions import IsStaff, IsStaffOrReadOnly, SuperuserDefinesCode
from executions.api.schema import BoundedPolymorphicProxySerializer
from executions.api.serializers import (
    ActionPoliciesSerializer,
    ActionSerializer,
    AuditEntrySerializer,
    ErrorSerializer,
    ExecutionDetailSerializer,
    ExecutionRequestSerializer,
    ExecutionSerializer,
    PackSerializer,
    PolicySerializer,
)
from executions.models import Action, AuditEntry, Execution, ExecutionStatus, Pack, Policy
from executions.storable import NUL
from queues import policy as policies


class ApiPagination(LimitOffsetPagination):
    """``limit`` (1 to 500, default 50) and ``offset`` (from 0); a value
    outside those is a 400 naming it, where DRF's would silently use another."""

    default_limit = 50
    # One request cannot make the server serialise a whole table.
    max_limit = 500

    def get_limit(self, request: Request) -> int:
        return _bounded_int(request, self.limit_query_param, self.default_limit, 1, self.max_limit)

    def get_offset(self, request: Request) -> int:
        return _bounded_int(request, self.offset_query_param, 0, 0, None)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        bounds = {
            self.limit_query_param: {"minimum": 1, "maximum": self.max_limit, "default": self.default_limit},
            self.offset_query_param: {"minimum": 0, "default": 0},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters


def _bounded_int(request: Request, name: str, default: int, minimum: int, maximum: int | None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    allowed = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
    try:
        # Digits only: int() would also take "+5", " 5" and "5_0".
        value = int(raw) if raw.isascii() and raw.isdigit() else None
    except ValueError:  # more digits than int() converts
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        raise ValidationError({name: [f"Must be a whole number {allowed}, got {raw!r}."]})
    return value


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    descriptions = {
        400: "Invalid input; the message names the field.",
        401: "No or invalid credentials.",
        403: "Authenticated, but not allowed: staff only, or no grant on the action; the message says which.",
        404: "No such object, or the body names one that does not exist.",
        409: "The current state forbids it: the ref is taken, a field that cannot change would, "
        "the action is disabled, the execution has ended.",
        413: "The body is larger than the server reads (DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB by default).",
        415: "The body is not JSON.",
        429: "Too many requests from this client, or the action's queue is full; see Retry-After.",
        503: "A backing store is unavailable; see Retry-After.",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=descriptions[code]) for code in codes}


def _created_or_accepted(executions: list[Execution]) -> int:
    """201 once the executions passed their gate; 202 when they are
    recorded but the gate did not answer: they stay `requested` and are
    admitted when it does, so the client must not send them again."""
    if any(execution.status == ExecutionStatus.REQUESTED for execution in executions):
        return status.HTTP_202_ACCEPTED
    return status.HTTP_201_CREATED


# What a request for executions answers: one execution, or a list for a batch.
EXECUTION_OR_BATCH = PolymorphicProxySerializer(
    component_name="ExecutionOrBatch",
    serializers=[ExecutionDetailSerializer, ExecutionSerializer(many=True)],
    resource_type_field_name=None,
    many=False,
)
LIST_ERRORS = errors(400, 401)
READ_ERRORS = errors(401, 404)
# Every request with a body may also be too large (413) or not JSON (415).
CREATE_ERRORS = errors(400, 401, 403, 409, 413, 415)
WRITE_ERRORS = errors(400, 401, 403, 404, 409, 413, 415)


@extend_schema_view(
    list=extend_schema(summary="List packs", responses={200: PackSerializer(many=True), **LIST_ERRORS}),
    retrieve=extend_schema(summary="Get a pack by ref", responses={200: PackSerializer, **READ_ERRORS}),
    create=extend_schema(
        summary="Create a pack (staff)",
        description="A ref already taken is a conflict (409).",
        responses={201: PackSerializer, **CREATE_ERRORS},
        examples=[OpenApiExample("A pack", value={"ref": "ops", "label": "Operations"}, request_only=True)],
    ),
    update=extend_schema(summary="Replace a pack (staff)", responses={200: PackSerializer, **WRITE_ERRORS}),
    partial_update=extend_schema(
        summary="Change a pack (staff)", responses={200: PackSerializer, **WRITE_ERRORS}
    ),
)
class PackViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    GenericViewSet,
):
    queryset = Pack.objects.order_by("ref")
    serializer_class = PackSerializer
    permission_classes = [IsStaffOrReadOnly]
    pagination_class = ApiPagination
    lookup_field = "ref"

    def get_object(self) -> Pack:
        ref = self.kwargs["ref"]
        # No ref holds a NUL (PostgreSQL could not store it); the driver refuses to send one.
        pack = Pack.objects.filter(ref=ref).first() if NUL not in ref else None
        if pack is None:
            raise NotFound(f"Pack '{ref}' not found")
        self.check_object_permissions(self.request, pack)
        return pack


@extend_schema_view(
    list=extend_schema(summary="List actions", responses={200: ActionSerializer(many=True), **LIST_ERRORS}),
    retrieve=extend_schema(summary="Get an action by ref", responses={200: ActionSerializer, **READ_ERRORS}),
    create=extend_schema(
        summary="Create an action (superuser)",
        description="The ref is `<pack>.<name>`; parameters_schema must be a valid JSON Schema. "
        "An unknown pack is 404; a name the pack already has, 409.",
        responses={201: ActionSerializer, **CREATE_ERRORS, **errors(404)},
        examples=[
            OpenApiExample(
                "A Python action",
                value={
                    "pack": "core",
                    "name": "greet",
                    "runner": "python",
                    "entrypoint": "workers.core_actions.echo",
                    "parameters_schema": {
                        "type": "object",
                        "properties": {"message": {"type": "string"}},
                        "additionalProperties": False,
                    },
                    "concurrency_limit": 2,
                },
                request_only=True,
            )
        ],
    ),
    update=extend_schema(
        summary="Replace an action's definition and policy (staff)",
        description="A new concurrency limit applies at once: raising it starts waiting executions.",
        responses={200: ActionSerializer, **WRITE_ERRORS},
    ),
    partial_update=extend_schema(
        summary="Change an action's definition or policy (staff)",
        description="A new concurrency limit applies at once: raising it starts waiting executions.",
        responses={200: ActionSerializer, **WRITE_ERRORS},
    ),
)
class ActionViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    GenericViewSet,
):
    queryset = Action.objects.select_related("pack").order_by("ref")
    serializer_class = ActionSerializer
    permission_classes = [IsStaffOrReadOnly, SuperuserDefinesCode]
    pagination_class = ApiPagination
    filterset_class = ActionFilter
    lookup_field = "ref"
    # Refs hold a dot (core.noop).
    lookup_value_regex = r"[^/]+"

    def get_object(self) -> Action:
        action = services.get_action(self.kwargs["ref"])
        self.check_object_permissions(self.request, action)
        return action

    @extend_schema(
        summary="The policies in force for an action",
        description="The effective settings (limit and where it comes from, method, per-parameter "
        "queues, queue length and timeout) and the enabled policies covering the action, "
        "action's first, then its pack's, then global ones, each by priority.",
        responses={200: ActionPoliciesSerializer, **READ_ERRORS},
    )
    @route(detail=True, methods=["get"], url_path="policies")
    def policies(self, request: Request, ref: str | None = None) -> Response:
        return Response(ActionPoliciesSerializer(policies.in_force(self.get_object())).data)


@extend_schema_view(
    list=extend_schema(
        summary="List executions",
        description="Newest first; filter by action, status and creation time. Staff see every "
        "execution; other users those of the actions a grant lets them read, and their own.",
        responses={200: ExecutionSerializer(many=True), **LIST_ERRORS},
    ),
)
class ExecutionViewSet(mixins.ListModelMixin, GenericViewSet):
    queryset = Execution.objects.none()
    serializer_class = ExecutionSerializer
    permission_classes = [IsAuthenticated]
    pagination_class = ApiPagination
    filterset_class = ExecutionFilter
    lookup_field = "id"
    # Any segment, so a malformed id is the same 404 as an unknown one.
    lookup_value_regex = r"[^/]+"

    def get_queryset(self) -> Any:
        # Parameters and results can hold secrets: only what the user may read.
        return services.list_executions(self.request.user)

    @extend_schema(
        summary="Request an execution, or a batch of them",
        description="Runs at once if the action has a free slot (`scheduled`), else waits in its "
        "FIFO queue (`queued`, with its `queue_position`).\n\n"
        "A JSON list of requests (at most 1,000, all of one action) is one batch: recorded in one "
        "transaction and passed through the gate in one step, in list order, which is their FIFO "
        "order. All or nothing: an invalid item (the error names it, `[3].parameters.seconds`) or a "
        "queue too full for the ones that would wait (429) leaves none of them. The answer is the "
        "list of executions, without `queue_position` and `estimated_wait_seconds`.",
        request=BoundedPolymorphicProxySerializer(
            component_name="ExecutionRequestOrBatch",
            serializers=[
                ExecutionRequestSerializer,
                ExecutionRequestSerializer(many=True, allow_empty=False, max_length=services.MAX_BATCH),
            ],
            resource_type_field_name=None,
            many=False,
        ),
        examples=[
            OpenApiExample(
                "One execution",
                value={"action": "core.echo", "parameters": {"message": "hello"}},
                request_only=True,
            ),
            OpenApiExample(
                "A batch",
                value=[{"action": "core.noop"}, {"action": "core.noop", "parameters": {}}],
                request_only=True,
            ),
        ],
        responses={
            201: EXECUTION_OR_BATCH,
            202: OpenApiResponse(
                EXECUTION_OR_BATCH,
                description="Recorded, but the queue (Redis) did not answer: the executions stay "
                "`requested` and are admitted, in request order, once it does. Do not send them again.",
            ),
            **errors(400, 401, 403, 404, 409, 413, 415, 429, 503),
        },
    )
    def create(self, request: Request) -> Response:
        if isinstance(request.data, list):
            return self._create_batch(request)
        serializer = ExecutionRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        execution = services.request_execution(
            serializer.validated_data["action"],
            serializer.validated_data.get("parameters"),
            requested_by=request.user,
            priority=serializer.validated_data["priority"],
        )
        return Response(
            ExecutionDetailSerializer(execution).data,
            status=_created_or_accepted([execution]),
            headers={"Location": f"{request.path.rstrip('/')}/{execution.pk}"},
        )

    def _create_batch(self, request: Request) -> Response:
        # An empty list passes here so the service's words refuse it, as for any caller.
        serializer = ExecutionRequestSerializer(data=request.data, many=True, max_length=services.MAX_BATCH)
        serializer.is_valid(raise_exception=True)
        items = serializer.validated_data
        refs = sorted({item["action"] for item in items})
        if len(refs) > 1:
            names = ", ".join(refs)
            raise ValidationError({"action": [f"A batch must request one action; this one names {names}"]})
        executions = services.request_executions(
            refs[0] if refs else "",
            [item.get("parameters") for item in items],
            requested_by=request.user,
            priorities=[item["priority"] for item in items],
        )
        return Response(
            ExecutionSerializer(executions, many=True).data, status=_created_or_accepted(executions)
        )

    @extend_schema(
        summary="Get an execution",
        description="While it waits: its place in line (1 = next) and its expected wait. "
        "An execution the user may not read is not found (404), like one that does not exist.",
        responses={200: ExecutionDetailSerializer, **READ_ERRORS},
    )
    def retrieve(self, request: Request, id: Any = None) -> Response:
        return Response(ExecutionDetailSerializer(services.get_execution(id, user=request.user)).data)

    @extend_schema(
        summary="Cancel an execution",
        description="A waiting one ends `cancelled` at once; a running one goes to `canceling` "
        "and its worker stops it. Allowed to whoever requested it, holders of a `cancel` grant on "
        "the action or its pack, and staff.",
        request=None,
        responses={200: ExecutionDetailSerializer, **errors(401, 403, 404, 409)},
    )
    @route(detail=True, methods=["post"])
    def cancel(self, request: Request, id: Any = None) -> Response:
        return Response(ExecutionDetailSerializer(services.cancel_execution(id, by=request.user)).data)


@extend_schema_view(
    list=extend_schema(
        summary="The audit trail (staff)",
        description="Changes to packs, actions and grants, cancels and purges: who, when, from "
        "where, and the fields that changed, before and after. Newest first.",
        responses={200: AuditEntrySerializer(many=True), **errors(400, 401, 403)},
    ),
)
class AuditViewSet(mixins.ListModelMixin, GenericViewSet):
    queryset = AuditEntry.objects.order_by("-at", "-pk")
    serializer_class = AuditEntrySerializer
    permission_classes = [IsStaff]
    pagination_class = ApiPagination
    filterset_class = AuditFilter


@extend_schema_view(
    list=extend_schema(summary="List policies", responses={200: PolicySerializer(many=True), **LIST_ERRORS}),
    retrieve=extend_schema(summary="Get a policy by name", responses={200: PolicySerializer, **READ_ERRORS}),
    create=extend_schema(
        summary="Create a policy (staff)",
        description="Applies at once to the queues it covers. An unknown pack or action is 404, "
        "a taken name 409.",
        responses={201: PolicySerializer, **WRITE_ERRORS},
    ),
    update=extend_schema(
        summary="Replace a policy (staff)",
        description="Applies at once: raising a limit starts waiting executions in order; lowering "
        "it lets running ones finish and grants nothing until below.",
        responses={200: PolicySerializer, **WRITE_ERRORS},
    ),
    partial_update=extend_schema(
        summary="Change a policy (staff)",
        description="Applies at once, as for a replacement.",
        responses={200: PolicySerializer, **WRITE_ERRORS},
    ),
    destroy=extend_schema(
        summary="Delete a policy (staff)",
        description="The next policy in precedence applies at once.",
        responses={204: None, **errors(401, 403, 404)},
    ),
)
class PolicyViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    GenericViewSet,
):
    queryset = Policy.objects.select_related("pack", "action").order_by("scope", "-priority", "pk")
    serializer_class = PolicySerializer
    permission_classes = [IsStaffOrReadOnly]
    pagination_class = ApiPagination
    lookup_field = "name"
    lookup_value_regex = r"[^/]+"

    def get_object(self) -> Policy:
        name = self.kwargs["name"]
        policy = self.get_queryset().filter(name=name).first()
        if policy is None:
            raise NotFound(f"Policy '{name}' not found")
        self.check_object_permissions(self.request, policy)
        return policy

    def perform_destroy(self, instance: Policy) -> None:
        catalog.delete_policy(instance)
