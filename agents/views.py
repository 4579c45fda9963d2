"""REST endpoints for agent types and for the agents of a project (`/api/v1/...`).

The agent routes match the seed's router: spawn, list, project metrics (routed before
``{agent_id}``), get, PATCH (``status`` through the lifecycle guard), pause, resume, DELETE
(terminate), plus per-agent metrics, usage and the transition ledger. Every write calls a service
in ``agents.services``; an ``Idempotency-Key`` header is passed on as ``request_id``.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models.expressions import RawSQL
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from projects.permissions import CanWriteProject, ProjectScopedMixin
from syndarix.api.idempotency import idempotency_key
from syndarix.api.permissions import IsStaffWithModelPermission
from syndarix.api.ratelimit import RateLimitMixin
from syndarix.api.schema import IDEMPOTENCY_KEY, MessageSerializer, error_responses
from syndarix.api.views import ValidatedInputMixin

from . import counters, services
from .filtersets import AgentInstanceFilterSet, AgentTypeFilterSet
from .models import AgentInstance, AgentType
from .selectors import agent_metrics, agent_queryset, represented_agent
from .serializers import (
    AgentActionSerializer,
    AgentInstanceSerializer,
    AgentMetricsSerializer,
    AgentSpawnSerializer,
    AgentTerminateSerializer,
    AgentTransitionSerializer,
    AgentTypeSerializer,
    AgentUpdateSerializer,
    AgentUsageSerializer,
)

INCLUDE_PLAYGROUND = OpenApiParameter(
    "include_playground", OpenApiTypes.BOOL, description="Count playground agents too (default false)."
)
TERMINATE_PARAMETERS = [
    OpenApiParameter("reason", OpenApiTypes.STR, description="Free text for the ledger (or in the JSON body)."),
    OpenApiParameter(
        "termination_reason",
        OpenApiTypes.STR,
        enum=["user", "failed", "timed_out", "budget", "superseded"],
        description="Why it stopped (default `user`; or in the JSON body).",
    ),
]

_WRITE_ERRORS = (400, 401, 403, 404, 409, 429, 503)
_E409 = {"e409": "`invalid_transition` (with `allowed_transitions`), `agent_terminated` or `conflict` (stale write)."}


@extend_schema_view(
    list=extend_schema(
        summary="List agent types",
        description="Any authenticated user; inactive types included (filter with `is_active`).",
        responses={200: AgentTypeSerializer},
    ),
    create=extend_schema(
        summary="Create an agent type",
        description=(
            "Staff with the `agents.add_agenttype` permission. `handler`, when set, must name a registered agent "
            "class (else 400 `unknown_handler`, listing them); a taken `slug` is 400 `unique`."
        ),
        responses={201: AgentTypeSerializer, **error_responses(403)},
    ),
    retrieve=extend_schema(
        summary="Get an agent type", responses={200: AgentTypeSerializer}
    ),
    partial_update=extend_schema(
        summary="Update an agent type",
        description=(
            "Staff with `agents.change_agenttype`. Deactivate (`is_active: false`) to stop new spawns. A changed "
            "`handler` must name a registered agent class (400 `unknown_handler`)."
        ),
        responses={200: AgentTypeSerializer, **error_responses(403)},
    ),
    destroy=extend_schema(
        summary="Delete an agent type",
        description="Staff with `agents.delete_agenttype`; refused with 409 `protected` while agents use it.",
        responses={204: OpenApiResponse(description="Deleted."), **error_responses(403, 409)},
    ),
)
@extend_schema(tags=["agent-types"])
class AgentTypeViewSet(RateLimitMixin, viewsets.ModelViewSet):
    """Agent types: read for any authenticated user, write for staff with the model permission."""

    queryset = AgentType.objects.all()
    serializer_class = AgentTypeSerializer
    filterset_class = AgentTypeFilterSet
    permission_classes = [IsAuthenticated, IsStaffWithModelPermission]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    lookup_url_kwarg = "agent_type_id"
    lookup_value_converter = "uuid"
    rate_limits = {"list": "60/m", "retrieve": "60/m", "create": "10/m", "partial_update": "30/m", "destroy": "10/m"}

    def perform_create(self, serializer):
        serializer.instance = services.agent_type_create(**serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.agent_type_update(serializer.instance, data=serializer.validated_data)


@extend_schema_view(
    list=extend_schema(
        operation_id="list_project_agents",
        summary="List a project's agents",
        description="Paginated, newest first. Playground agents are left out unless `include_playground=true`.",
        responses={200: AgentInstanceSerializer},
    ),
    create=extend_schema(
        operation_id="spawn_agent",
        summary="Spawn an agent",
        description=(
            "Creates an IDLE agent of an active type (`config` validated against the type's schema). An unknown "
            "type is 404, an inactive one 400; a full workspace is 409 `concurrency_limit`."
        ),
        request=AgentSpawnSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            201: AgentInstanceSerializer,
            **error_responses(*_WRITE_ERRORS, e409="`concurrency_limit`: the workspace runs its limit of agents."),
        },
    ),
    retrieve=extend_schema(
        operation_id="get_agent",
        summary="Get an agent",
        responses={200: AgentInstanceSerializer},
    ),
    partial_update=extend_schema(
        operation_id="update_agent",
        summary="Update an agent",
        description=(
            "Editable: `name`, `current_task`, `short_term_memory`, `long_term_memory_ref`, `session_id`, `config`; "
            "`status` moves through the lifecycle guard (409 `invalid_transition` when the table forbids it). "
            "Any other field sent is ignored and stays unchanged."
        ),
        request=AgentUpdateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: AgentInstanceSerializer, **error_responses(*_WRITE_ERRORS, **_E409)},
    ),
    destroy=extend_schema(
        operation_id="terminate_agent",
        summary="Terminate an agent",
        description=(
            "Moves the agent to `terminated` for good (clears session and task, records the reason). Terminating "
            "a terminated agent is 409 `already_terminated`."
        ),
        request=AgentTerminateSerializer,
        parameters=[IDEMPOTENCY_KEY, *TERMINATE_PARAMETERS],
        responses={
            200: MessageSerializer,
            **error_responses(*_WRITE_ERRORS, e409="`already_terminated`, or `conflict` (stale write)."),
        },
    ),
    pause=extend_schema(
        operation_id="pause_agent",
        summary="Pause an agent",
        description="IDLE, WORKING or WAITING → PAUSED; pausing a paused agent changes nothing.",
        request=AgentActionSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: AgentInstanceSerializer, **error_responses(*_WRITE_ERRORS, **_E409)},
    ),
    resume=extend_schema(
        operation_id="resume_agent",
        summary="Resume an agent",
        description="PAUSED → IDLE; resuming an idle agent changes nothing.",
        request=AgentActionSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: AgentInstanceSerializer, **error_responses(*_WRITE_ERRORS, **_E409)},
    ),
    project_metrics=extend_schema(
        operation_id="get_project_agent_metrics",
        summary="Project agent metrics",
        description=(
            "Counts by status and usage totals over the project's agents, read from the project's counters (kept in "
            "step with every spawn, transition and usage): one query whatever the fleet's size."
        ),
        parameters=[INCLUDE_PLAYGROUND],
        responses={200: AgentMetricsSerializer},
    ),
    agent_metrics=extend_schema(
        operation_id="get_agent_metrics",
        summary="Agent metrics",
        description="The project metrics' shape, for one agent.",
        responses={200: AgentMetricsSerializer},
    ),
    usage=extend_schema(
        operation_id="record_agent_usage",
        summary="Record usage",
        description="Adds `tokens`, `cost` (USD) and `tasks_completed` (all ≥ 0) atomically; 409 when terminated.",
        request=AgentUsageSerializer,
        responses={
            200: AgentInstanceSerializer,
            **error_responses(400, 401, 403, 404, 409, 429, e409="`agent_terminated`: usage is not recorded."),
        },
    ),
    transitions=extend_schema(
        operation_id="list_agent_transitions",
        summary="Agent transition ledger",
        description="Every lifecycle change of the agent (the spawn first), newest first, paginated.",
        responses={200: AgentTransitionSerializer(many=True)},
    ),
)
@extend_schema(tags=["agents"])
class AgentViewSet(
    RateLimitMixin, ProjectScopedMixin, ValidatedInputMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """The agents of one project. Anyone who can see the project reads; its owner, the workspace's admins and
    operators, and superusers write (viewers get 403)."""

    serializer_class = AgentInstanceSerializer
    filterset_class = AgentInstanceFilterSet
    permission_classes = [IsAuthenticated, CanWriteProject]
    lookup_url_kwarg = "agent_id"
    lookup_value_converter = "uuid"
    # Per user (IP when anonymous), from the seed; usage and the ledger are this API's own.
    rate_limits = {
        "create": "20/m",
        "list": "60/m",
        "retrieve": "60/m",
        "project_metrics": "60/m",
        "agent_metrics": "60/m",
        "partial_update": "30/m",
        "pause": "20/m",
        "resume": "20/m",
        "destroy": "10/m",
        "usage": "120/m",
        "transitions": "60/m",
    }

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AgentInstance.objects.none()
        # Newest first, matching the ``agent_list_idx`` index (``id`` breaks ties, so cursors are exact). Only the reads
        # use this queryset (the writes lock and read their agent with ``get_locked_object``), and they answer with the
        # representation: the joined type and revision load only what it shows.
        return agent_queryset(self.project, represented_only=True).order_by("-created_at", "-id")

    def get_object(self) -> AgentInstance:
        """The URL's agent within the URL's project (list filters such as ``include_playground`` do not apply)."""
        agent = represented_agent(self.project, self.kwargs[self.lookup_url_kwarg])
        if agent is None:
            raise Http404("No AgentInstance matches the given query.")
        self.check_object_permissions(self.request, agent)
        return agent

    def get_locked_object(self) -> AgentInstance:
        """``get_object`` for a write: the agent locked and read once, with everything its response needs
        (``services.agent_lock``). Call it inside ``transaction.atomic()``."""
        try:
            agent = services.agent_lock(self.kwargs[self.lookup_url_kwarg], project=self.project)
        except AgentInstance.DoesNotExist as exc:
            raise Http404 from exc
        self.check_object_permissions(self.request, agent)
        return agent

    def list_total(self) -> RawSQL | None:
        """The list's exact ``total`` from the project's counters when it is filtered by ``status`` and
        ``include_playground`` only, as SQL the page's own query carries (``counters.agent_count_sql``); ``None``
        otherwise, and for the other lists: the paginator counts."""
        filterset = getattr(self, "filterset", None)  # set by the filter backend, validated already
        if self.action != "list" or filterset is None:
            return None
        data = filterset.form.cleaned_data
        if data.get("q") or data.get("agent_type"):
            return None
        return counters.agent_count_sql(
            self.project, statuses=data.get("status"), include_playground=bool(data.get("include_playground"))
        )

    def list_query_key(self) -> tuple | None:
        """What the list's page query is built from, for ``EnvelopePagination`` to compile it once per key: the
        project and the query string (filters, ordering, page, limit, cursor). ``None`` for the other lists."""
        if self.action != "list":
            return None
        query = tuple(sorted((name, tuple(values)) for name, values in self.request.query_params.lists()))
        return ("agents.list", self.project.pk, query)

    def _present(self, agent: AgentInstance, status_code: int = status.HTTP_200_OK) -> Response:
        """Answer with ``agent``'s representation; it must come from ``agent_queryset`` or ``agent_lock``."""
        return Response(AgentInstanceSerializer(agent, context=self.get_serializer_context()).data, status=status_code)

    def get_serializer_class(self):
        """Responses are ``AgentInstanceSerializer``; the browsable API's forms show each write's input."""
        method = getattr(self.request, "method", "GET")
        if method == "POST":
            return self._FORMS.get(self.action, AgentSpawnSerializer)
        if method == "PATCH":
            return AgentUpdateSerializer
        return AgentInstanceSerializer

    _FORMS = {"pause": AgentActionSerializer, "resume": AgentActionSerializer, "usage": AgentUsageSerializer}

    def create(self, request, *args, **kwargs):
        data = self.validated_input(AgentSpawnSerializer)
        request_id = idempotency_key(request)
        agent = services.agent_spawn(
            project=self.project,
            agent_type=data["agent_type_id"],
            name=data["name"],
            config=data["config"],
            current_task=data["current_task"],
            actor=request.user,
            request_id=request_id,
        )
        if agent.project_id == self.project.pk:
            agent.project = self.project
        # A new agent has no issue; only a replay (an Idempotency-Key seen before) may return one that has.
        agent.assigned_issues_count = agent.assigned_issues.count() if request_id else 0
        return self._present(agent, status.HTTP_201_CREATED)

    # Writes lock and read their agent once (``get_locked_object``) and answer from that instance.

    @transaction.atomic
    def partial_update(self, request, *args, **kwargs):
        agent = self.get_locked_object()
        data = self.validated_input(AgentUpdateSerializer)
        agent = services.agent_update(
            agent, actor=request.user, data=data, request_id=idempotency_key(request), locked=True
        )
        return self._present(agent)

    @transaction.atomic
    def destroy(self, request, *args, **kwargs):
        agent = self.get_locked_object()
        data = self.validated_input(AgentTerminateSerializer, request.data or request.query_params)
        agent = services.agent_terminate(
            agent,
            actor=request.user,
            reason=data["reason"],
            termination_reason=data["termination_reason"],
            request_id=idempotency_key(request),
            locked=True,
        )
        body = {"success": True, "message": f"Agent '{agent.name}' has been terminated"}
        return Response(MessageSerializer(body).data)

    @action(detail=True, methods=["post"])
    @transaction.atomic
    def pause(self, request, *args, **kwargs):
        agent = self.get_locked_object()
        data = self.validated_input(AgentActionSerializer)
        agent = services.agent_pause(
            agent, actor=request.user, reason=data["reason"], request_id=idempotency_key(request), locked=True
        )
        return self._present(agent)

    @action(detail=True, methods=["post"])
    @transaction.atomic
    def resume(self, request, *args, **kwargs):
        agent = self.get_locked_object()
        data = self.validated_input(AgentActionSerializer)
        agent = services.agent_resume(
            agent, actor=request.user, reason=data["reason"], request_id=idempotency_key(request), locked=True
        )
        return self._present(agent)

    @action(detail=False, methods=["get"], url_path="metrics", filter_backends=[], pagination_class=None)
    def project_metrics(self, request, *args, **kwargs):
        include_playground = AgentInstanceFilterSet.include_playground_in(request.query_params)
        metrics = counters.project_metrics(self.project, include_playground=include_playground)
        return Response(AgentMetricsSerializer(metrics).data)

    @action(detail=True, methods=["get"], url_path="metrics", filter_backends=[], pagination_class=None)
    def agent_metrics(self, request, *args, **kwargs):
        agent = self.get_object()
        return Response(AgentMetricsSerializer(agent_metrics(AgentInstance.objects.filter(pk=agent.pk))).data)

    @action(detail=True, methods=["post"], filter_backends=[], pagination_class=None)
    @transaction.atomic
    def usage(self, request, *args, **kwargs):
        agent = self.get_locked_object()
        data = self.validated_input(AgentUsageSerializer)
        agent = services.agent_record_usage(
            agent, tokens=data["tokens"], cost=data["cost"], tasks_completed=data["tasks_completed"], locked=True
        )
        return self._present(agent)

    @action(detail=True, methods=["get"], filter_backends=[])
    def transitions(self, request, *args, **kwargs):
        agent = self.get_object()
        ledger = agent.transitions.select_related("actor").order_by("-created_at", "-id")
        page = self.paginate_queryset(ledger)
        return self.get_paginated_response(AgentTransitionSerializer(page, many=True).data)
