"""REST endpoints of an agent's runs: ``/api/v1/projects/{project_id}/agents/{agent_id}/runs...``.

Same access rules as the agent API (anyone who can see the project reads; its owner, the workspace's
admins and operators, and superusers write; viewers 403; anything out of reach 404), the same error
envelope, rate limits per user, and ``Idempotency-Key`` on every write. Every write calls a service
of ``agents.runtime.services``.
"""

from __future__ import annotations

from functools import cached_property

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from projects.permissions import CanWriteProject, ProjectScopedMixin
from syndarix.api.idempotency import idempotency_key
from syndarix.api.ratelimit import RateLimitMixin
from syndarix.api.schema import IDEMPOTENCY_KEY, error_responses
from syndarix.api.views import ValidatedInputMixin

from ..choices import RUN_FINISHED_STATUSES, RunRequestKind
from ..events import views as event_views
from ..events.outbox import run_data
from ..events.streams import data_frame, event_stream
from ..models import AgentInstance, AgentRun, AgentRunRequest
from . import services
from .filtersets import AgentRunFilterSet
from .selectors import run_queryset
from .serializers import (
    AgentRunDetailSerializer,
    AgentRunRequestSerializer,
    AgentRunSerializer,
    AgentRunStepSerializer,
    ApprovalDecisionSerializer,
    RunCreateSerializer,
    RunInputSerializer,
)

_WRITE_ERRORS = (400, 401, 403, 404, 409, 429)
APPROVAL_ID = OpenApiParameter("approval_id", str, OpenApiParameter.PATH, description="The approval's id (a UUID).")


@extend_schema(tags=["runs"])
@extend_schema_view(
    list=extend_schema(
        operation_id="list_agent_runs",
        summary="List an agent's runs",
        description="Newest first, paginated; `status` filters (repeatable).",
        responses={200: AgentRunSerializer},
    ),
    create=extend_schema(
        operation_id="create_agent_run",
        summary="Run an agent",
        description=(
            "Queues a run (202, `queued`): an `instruction`, an `issue_id` of the agent's project (the agent becomes "
            "its assignee), or both. It starts on a worker when the agent is idle and its earlier runs are done. "
            "400 `not_runnable` when the agent has neither an agent class with `run(ctx)` nor a template; 409 "
            "`agent_terminated`; 503 `agents_disabled`. Repeating an `Idempotency-Key` returns the first run."
        ),
        request=RunCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: AgentRunSerializer,
            **error_responses(*_WRITE_ERRORS, 503, e409="`agent_terminated`: a terminated agent runs nothing."),
        },
    ),
    retrieve=extend_schema(
        operation_id="get_agent_run",
        summary="Get a run with its steps",
        description="The run and its first 100 steps (`steps_truncated` when there are more: see `.../steps`).",
        responses={200: AgentRunDetailSerializer},
    ),
    events=extend_schema(
        operation_id="stream_agent_run_events",
        summary="Stream a run's events (SSE)",
        description=(
            "`text/event-stream` of the run as it executes. Without `Last-Event-ID` it starts with a `run.state` "
            "frame (the run's current state, no `id:`), then every event of the run as it commits (`run.step`, "
            "`request.created`, …) and `llm.delta` frames (an LLM call's text as it streams, no `id:`, never "
            "stored); it ends after the run's `run.succeeded`, `run.failed` or `run.cancelled` (at once for a run "
            "that has ended). With `Last-Event-ID` it resumes after that event with no gap and no duplicate."
        ),
        parameters=[event_views.LAST_EVENT_ID_HEADER, event_views.LAST_EVENT_ID_QUERY],
        responses={**event_views.STREAM_RESPONSE, **error_responses(400, 401, 404, 429)},
    ),
    steps=extend_schema(
        operation_id="list_agent_run_steps",
        summary="A run's steps",
        description="The run's trace in order (index 0 first), paginated.",
        responses={200: AgentRunStepSerializer(many=True)},
    ),
    cancel=extend_schema(
        operation_id="cancel_agent_run",
        summary="Cancel a run",
        description=(
            "A queued, paused or waiting run is cancelled at once; a running one stops at its next step boundary "
            "and its agent goes back to idle. Cancelling a cancelled run changes nothing; 409 `run_finished` for "
            "a run that succeeded or failed."
        ),
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: AgentRunSerializer, **error_responses(*_WRITE_ERRORS, e409="`run_finished`.")},
    ),
    decide=extend_schema(
        operation_id="decide_agent_run_approval",
        summary="Approve or deny a tool call",
        description=(
            "`decision`: `approve` (the tool runs once and the run continues, `waiting → working`) or `deny` (the "
            "model is told the refusal, with `reason`). 409 `already_decided` for a request answered before."
        ),
        request=ApprovalDecisionSerializer,
        parameters=[APPROVAL_ID, IDEMPOTENCY_KEY],
        responses={200: AgentRunRequestSerializer, **error_responses(*_WRITE_ERRORS, e409="`already_decided`.")},
    ),
    answer=extend_schema(
        operation_id="answer_agent_run_input",
        summary="Answer a run's request for input",
        description=(
            "Answers the run's pending `request_input` (MCP elicitation: `content` is validated against its "
            "`requested_schema`, 400 per field `content.<name>` otherwise) or `request_connection` (`content`: "
            "`{\"connected\": bool, \"connection\"?, \"note\"?}`). `action` `decline` or `cancel` answers without "
            "content. The run continues with the answer as the tool result. 409 `no_pending_input`; 409 "
            "`unsupported_schema` when accepting an input request whose schema is not an MCP elicitation schema "
            "(stored before such schemas were refused): decline or cancel it."
        ),
        request=RunInputSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: AgentRunRequestSerializer,
                   **error_responses(*_WRITE_ERRORS, e409="`no_pending_input` or `unsupported_schema`.")},
    ),
)
class AgentRunViewSet(
    event_views.JSONErrorsMixin, RateLimitMixin, ProjectScopedMixin, ValidatedInputMixin, mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """The runs of one agent."""

    serializer_class = AgentRunSerializer
    filterset_class = AgentRunFilterSet
    permission_classes = [IsAuthenticated, CanWriteProject]
    lookup_url_kwarg = "run_id"
    lookup_value_converter = "uuid"
    rate_limits = {
        "list": "60/m", "retrieve": "60/m", "steps": "60/m", "create": "20/m", "cancel": "20/m", "decide": "30/m",
        "answer": "30/m", "events": "60/m",
    }

    @cached_property
    def agent(self) -> AgentInstance:
        """The URL's agent within the URL's project, else 404."""
        return get_object_or_404(
            AgentInstance.objects.select_related("agent_type", "project"), pk=self.kwargs["agent_id"],
            project=self.project,
        )

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AgentRun.objects.none()
        return run_queryset().filter(agent=self.agent).order_by("-created_at", "-id")

    def get_serializer_class(self):
        return AgentRunDetailSerializer if self.action == "retrieve" else AgentRunSerializer

    def _present(self, run: AgentRun, status_code: int = status.HTTP_200_OK) -> Response:
        run = self.get_queryset().get(pk=run.pk)
        return Response(AgentRunSerializer(run, context=self.get_serializer_context()).data, status=status_code)

    def create(self, request, *args, **kwargs):
        data = self.validated_input(RunCreateSerializer)
        run, _ = services.run_create(
            agent=self.agent, instruction=data["instruction"], issue=data["issue_id"], actor=request.user,
            request_id=idempotency_key(request),
        )
        return self._present(run, status.HTTP_202_ACCEPTED)

    @action(detail=True, methods=["get"], filter_backends=[])
    def steps(self, request, *args, **kwargs):
        run = self.get_object()
        page = self.paginate_queryset(run.steps.order_by("index"))
        return self.get_paginated_response(AgentRunStepSerializer(page, many=True).data)

    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None,
            renderer_classes=event_views.STREAM_RENDERERS)
    def events(self, request, *args, **kwargs):
        run = self.get_object()
        after = event_views.last_event_id(request)
        run_id = run.pk

        def state() -> list[bytes]:
            current = AgentRun.objects.get(pk=run_id)
            return [data_frame("run.state", run_data(current))]

        def finished() -> bool:
            return AgentRun.objects.filter(pk=run_id, status__in=RUN_FINISHED_STATUSES).exists()

        return event_views.stream_response(request, event_stream(
            last_event_id=after, project_id=self.project.pk, run_id=run_id,
            initial=state if after is None else None, finished=finished, deltas=True,
        ))

    @action(detail=True, methods=["post"], filter_backends=[], pagination_class=None)
    def cancel(self, request, *args, **kwargs):
        idempotency_key(request)  # validated like every write; cancelling twice changes nothing anyway
        return self._present(services.run_cancel(self.get_object(), actor=request.user))

    @action(detail=True, methods=["post"], url_path="approvals/<uuid:approval_id>", filter_backends=[],
            pagination_class=None)
    def decide(self, request, *args, **kwargs):
        run = self.get_object()
        approval = get_object_or_404(AgentRunRequest, pk=kwargs["approval_id"], run=run, kind=RunRequestKind.APPROVAL)
        data = self.validated_input(ApprovalDecisionSerializer)
        approval = services.run_request_decide(
            approval, decision=data["decision"], reason=data["reason"], actor=request.user,
            request_id=idempotency_key(request),
        )
        return Response(AgentRunRequestSerializer(approval).data)

    @action(detail=True, methods=["post"], url_path="input", filter_backends=[], pagination_class=None)
    def answer(self, request, *args, **kwargs):
        run = self.get_object()
        data = self.validated_input(RunInputSerializer)
        answered = services.run_request_answer(
            run, content=data["content"], action=data["action"], actor=request.user,
            request_id=idempotency_key(request),
        )
        return Response(AgentRunRequestSerializer(answered).data)
