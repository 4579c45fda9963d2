"""Build-kit API views: thin wrappers over ``buildkit.services`` and ``buildkit.selectors``.

Routes (``buildkit/urls.py``, under ``/api/v1/``, no trailing slash):

- ``GET|POST agent-types/{id}/revisions``, ``GET agent-types/{id}/revisions/{version}``,
  ``GET agent-types/{id}/revisions/{a}/diff/{b}``
- ``GET agent-types/{id}/inspect``
- ``POST agent-types/{id}/playground/runs``
- ``POST agent-templates/resolve``
- ``GET platform-ops``, ``POST capabilities/find``
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.models import AgentType, AgentTypeRevision
from projects.models import Project
from syndarix.api.idempotency import idempotency_key
from syndarix.api.pagination import EnvelopePagination
from syndarix.api.ratelimit import RateLimitMixin
from syndarix.api.schema import IDEMPOTENCY_KEY, error_responses
from syndarix.exceptions import NotFound

from . import selectors, services
from .permissions import CanCommitTemplates
from .platform_ops import op_as_dict, platform_ops
from .serializers import (
    AgentTypeRevisionSerializer,
    AgentTypeRevisionSummarySerializer,
    FindCapabilitiesRequestSerializer,
    FindCapabilitiesResponseSerializer,
    InspectSerializer,
    PlatformOpSerializer,
    PlaygroundRunRequestSerializer,
    PlaygroundRunSerializer,
    ResolveRequestSerializer,
    ResolveResponseSerializer,
    RevisionCommitSerializer,
    RevisionDiffSerializer,
)

TAG = "build kit"

#: The build kit's own error texts; every other status uses ``syndarix.api.schema.ERROR_DESCRIPTIONS``.
_ERROR_TEXT = {
    400: "Invalid input: one error per problem, at its dotted path (`template.tools.2.op`, `config.model`); a "
    "document PostgreSQL cannot store is `nul_character` / `invalid_data`, one nested too deep `nesting_too_deep`.",
    413: "`payload_too_large`: the template (or a playground run's config) is over 512 KiB as compact JSON "
    "(`max_bytes`, `size_bytes`).",
}


def errors(*statuses: int, **descriptions: str) -> dict[int, OpenApiResponse]:
    """``extend_schema(responses=...)`` entries for the given error statuses, with the build kit's texts
    (``e409="..."`` overrides one status's text)."""
    return error_responses(*statuses, defaults=_ERROR_TEXT, **descriptions)


AGENT_TYPE_ID = OpenApiParameter(
    "agent_type_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Agent type id."
)

#: A revision number in a path: ``3`` or ``v3`` (anything else is 400 ``invalid_version``).
VERSION_SCHEMA = {"type": "string", "pattern": "^[vV]?[1-9][0-9]{0,8}$"}

TEMPLATE_EXAMPLE = {
    "instructions": {"agents_md": "You triage new issues and label them."},
    "llm": {"model": "gpt-4.1-mini", "provider": "openai"},
    "tools": [{"type": "platform", "op": "query_agents"}],
    "skills": [],
    "sandbox": {"kind": "local", "permissions": {"write_files": "deny"}},
}


class AgentTypeMixin:
    """Resolves ``self.agent_type`` from the ``agent_type_id`` URL argument (404 when unknown)."""

    def get_agent_type(self) -> AgentType:
        if not hasattr(self, "_agent_type"):
            self._agent_type = get_object_or_404(AgentType, pk=self.kwargs["agent_type_id"])
        return self._agent_type


class RevisionListCreateView(RateLimitMixin, AgentTypeMixin, generics.ListCreateAPIView):
    """An agent type's committed template revisions."""

    permission_classes = [IsAuthenticated, CanCommitTemplates]
    serializer_class = AgentTypeRevisionSummarySerializer
    rate_limits = {"get": "120/m", "post": "20/m"}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no URL arguments
            return AgentTypeRevision.objects.none()
        return selectors.revision_queryset(self.get_agent_type())

    @extend_schema(
        tags=[TAG],
        summary="List an agent type's revisions",
        description="Newest first, paginated (`?page=`, `?limit=` ≤ 100); templates are left out (read one revision "
        "for its template).",
        parameters=[AGENT_TYPE_ID],
        responses={200: AgentTypeRevisionSummarySerializer(many=True), **errors(401, 404, 429)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=[TAG],
        summary="Commit a template as the next revision",
        description="Stores exactly the submitted `template` (validated against the agent-template JSON Schema) as "
        "version latest + 1. The playground build kit is never part of a commit. Staff with the permission to change "
        "agent types only.",
        parameters=[AGENT_TYPE_ID],
        request=RevisionCommitSerializer,
        examples=[OpenApiExample("Commit", request_only=True,
                                 value={"template": TEMPLATE_EXAMPLE, "message": "Triage agent, first version"})],
        responses={201: AgentTypeRevisionSerializer, **errors(400, 401, 403, 404, 413, 429)},
    )
    def post(self, request, *args, **kwargs):
        agent_type = self.get_agent_type()
        body = RevisionCommitSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        revision = services.template_commit(
            agent_type=agent_type, template=body.validated_data["template"],
            message=body.validated_data["message"], author=request.user,
        )
        return Response(AgentTypeRevisionSerializer(revision).data, status=status.HTTP_201_CREATED)


class RevisionDetailView(RateLimitMixin, AgentTypeMixin, APIView):
    rate_limits = {"get": "120/m"}

    @extend_schema(
        tags=[TAG],
        summary="Read one revision with its template",
        parameters=[
            AGENT_TYPE_ID,
            OpenApiParameter("version", VERSION_SCHEMA, OpenApiParameter.PATH, description="3, or v3."),
        ],
        responses={200: AgentTypeRevisionSerializer, **errors(400, 401, 404, 429)},
    )
    def get(self, request, agent_type_id, version):
        revision = selectors.agent_type_revision_get(agent_type=self.get_agent_type(), version=version)
        return Response(AgentTypeRevisionSerializer(revision).data)


class RevisionDiffView(RateLimitMixin, AgentTypeMixin, APIView):
    rate_limits = {"get": "120/m"}

    @extend_schema(
        tags=[TAG],
        summary="Diff two revisions (JSON Patch)",
        description="The RFC 6902 JSON Patch that turns revision `from_version`'s template into `to_version`'s.",
        parameters=[
            AGENT_TYPE_ID,
            OpenApiParameter("from_version", VERSION_SCHEMA, OpenApiParameter.PATH, description="3, or v3."),
            OpenApiParameter("to_version", VERSION_SCHEMA, OpenApiParameter.PATH, description="3, or v3."),
        ],
        responses={200: RevisionDiffSerializer, **errors(400, 401, 404, 429)},
    )
    def get(self, request, agent_type_id, from_version, to_version):
        diff = selectors.agent_type_revision_diff(
            agent_type=self.get_agent_type(), from_version=from_version, to_version=to_version
        )
        return Response(RevisionDiffSerializer(diff).data)


class InspectView(RateLimitMixin, AgentTypeMixin, APIView):
    rate_limits = {"get": "120/m"}

    @extend_schema(
        tags=[TAG],
        summary="Inspect an agent type: latest template and the playground build kit",
        description="`agent_type.data.parameters.agent` is the latest committed template (null when none) and "
        "`agent_type.revision` its version. `additional_context.playground_build_kit.agent_template_overlay` is the "
        "build-kit overlay a playground applies to a kit-on run; it is never committed. If the overlay cannot be "
        "built, the answer comes without `additional_context`.",
        parameters=[AGENT_TYPE_ID],
        responses={200: InspectSerializer, **errors(401, 404, 429)},
    )
    def get(self, request, agent_type_id):
        inspection = services.agent_type_inspect(agent_type=self.get_agent_type())
        return Response(InspectSerializer.render(inspection))


def writable_project(user, project_id) -> Project:
    """The project ``project_id`` if ``user`` may write to it.

    Raises:
        NotFound: the project does not exist or ``user`` cannot see it (404, field ``project_id``).
        PermissionDenied: ``user`` can see it but only reads (403).
    """
    project = Project.objects.visible_to(user).select_related("workspace").filter(pk=project_id).first()
    if project is None:
        raise NotFound("Project not found.", field="project_id")
    if not project.can_write(user):
        raise PermissionDenied("Your role in this workspace is read-only.")
    return project


class PlaygroundRunView(RateLimitMixin, AgentTypeMixin, APIView):
    rate_limits = {"post": "20/m"}

    @extend_schema(
        tags=[TAG],
        summary="Run a draft in the playground",
        description="Spawns a playground agent (`is_playground: true`) of the agent type into `project_id` (a "
        "project the caller can write to). The draft is `template`, or the latest revision's template. With "
        "`build_kit` (default true) the build-kit overlay is applied to a throwaway copy first; then the embeds are "
        "resolved and the agent is spawned with that effective template. `overrides` lists each of the draft's "
        "values the kit changed. `config` is the agent's instance config, validated against the agent type's "
        "`config_schema`. Nothing is committed.\n\nRepeating an `Idempotency-Key` already used by a playground "
        "run of this agent type in the project spawns nothing: the answer is the first run's (same agent, as it is "
        "now; same effective template, overrides, `build_kit`, `template_source`, `revision` and references) with "
        "`replayed: true`, whatever the new body says. A key used there by another request (a plain spawn, a run of "
        "another type) is 409 `idempotency_key_reused`.",
        parameters=[AGENT_TYPE_ID, IDEMPOTENCY_KEY],
        request=PlaygroundRunRequestSerializer,
        examples=[OpenApiExample("Kit on", request_only=True,
                                 value={"project_id": "7f9c6a52-3f57-4a6b-9a55-1c1f0f3e2a10",
                                        "template": TEMPLATE_EXAMPLE, "build_kit": True})],
        responses={
            201: PlaygroundRunSerializer,
            **errors(
                400, 401, 403, 404, 409, 413, 429, 503,
                e409="`concurrency_limit`: the workspace already holds its limit of live agents; "
                "`idempotency_key_reused`: the Idempotency-Key was used in this project by another request.",
            ),
        },
    )
    def post(self, request, agent_type_id):
        agent_type = self.get_agent_type()
        body = PlaygroundRunRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        project = writable_project(request.user, data["project_id"])
        run = services.playground_run(
            agent_type=agent_type,
            project=project,
            actor=request.user,
            template=data.get("template"),
            build_kit=data["build_kit"],
            name=data.get("name"),
            config=data.get("config"),
            request_id=idempotency_key(request),
        )
        return Response(PlaygroundRunSerializer.render(run), status=status.HTTP_201_CREATED)


class ResolveView(RateLimitMixin, APIView):
    rate_limits = {"post": "30/m"}

    @extend_schema(
        tags=[TAG],
        summary="Resolve the @ag.embed references of a template",
        description="Send a `template` (any JSON object) or a `reference` (`{slug, version?}` of an agent type or a "
        "reserved `__sx__` workflow). Every `{\"@ag.embed\": ...}` object is replaced by what it references, at most "
        "`max_depth` (10) deep and `max_embeds` (100) in all. With `error_policy` `exception` the first error is a "
        "400 naming its `path`; `placeholder` writes `<error:Type>` and `keep` leaves the embed, both listing the "
        "problems in `errors`.",
        request=ResolveRequestSerializer,
        examples=[
            OpenApiExample(
                "Embed a skill", request_only=True,
                value={"template": {"skills": [{"@ag.embed": {"@ag.references": {
                    "workflow": {"slug": "__sx__getting_started"}}}}]}},
            )
        ],
        responses={200: ResolveResponseSerializer, **errors(400, 401, 429)},
    )
    def post(self, request):
        body = ResolveRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        resolution = services.template_resolve(
            template=data.get("template"),
            reference=data.get("reference"),
            max_depth=data["max_depth"],
            max_embeds=data["max_embeds"],
            error_policy=data["error_policy"],
        )
        return Response(ResolveResponseSerializer.render(resolution))


class PlatformOpListView(RateLimitMixin, generics.GenericAPIView):
    """The platform ops catalog as a paginated list (``EnvelopePagination``, the API's list envelope)."""

    cursor_pagination = False  # the list is built in Python: ``?page=`` only

    serializer_class = PlatformOpSerializer
    pagination_class = EnvelopePagination
    filter_backends: list = []  # a fixed catalog, not a queryset
    rate_limits = {"get": "120/m"}

    def get_queryset(self) -> list[dict]:
        return [op_as_dict(op) for op in platform_ops().values()]

    @extend_schema(
        tags=[TAG],
        summary="List the platform operations",
        description="The platform tools (the one tool registry) a template can use as `{\"type\": \"platform\", "
        "\"op\": ...}` tools, with their input and output schemas, MCP annotations, default permission and the API "
        "route that does the same. Paginated (`?page=`, `?limit=` ≤ 100).",
        responses={200: PlatformOpSerializer(many=True), **errors(401, 404, 429)},
    )
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class FindCapabilitiesView(RateLimitMixin, APIView):
    rate_limits = {"post": "60/m"}

    @extend_schema(
        tags=[TAG],
        summary="Find agent types and agent classes for plain-language use cases",
        description="The `find_capabilities` platform operation: for each use case, the active agent types (with the "
        "agent class behind each) and the registered agent classes no agent type uses yet (`kind: agent_class`, "
        "`agent_type_id: null`) whose capabilities, name or description match its words, best first.",
        request=FindCapabilitiesRequestSerializer,
        responses={200: FindCapabilitiesResponseSerializer, **errors(400, 401, 429)},
    )
    def post(self, request):
        body = FindCapabilitiesRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        results = selectors.capabilities_find(**body.validated_data)
        return Response(FindCapabilitiesResponseSerializer({"data": results}).data)
