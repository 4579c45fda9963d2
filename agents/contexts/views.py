"""The shared-context API: ``/api/v1/projects/{project_id}/contexts`` (routes in ``agents.contexts.urls``).

Thin: each method validates its input with a serializer, calls one function of ``agents.contexts.services``
and serializes the result. Everything is scoped to a project the caller can see (else 404); only
the owner, workspace admins and operators write (viewers get 403).
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from projects.permissions import CanWriteProject, ProjectScopedMixin
from syndarix.api.ratelimit import RateLimitMixin
from syndarix.api.schema import error_responses

from ..models import AgentContext
from . import services as contexts
from .filtersets import AgentContextFilterSet
from .serializers import (
    AgentContextCreateSerializer,
    AgentContextDetailSerializer,
    AgentContextSerializer,
    AgentContextVersionDetailSerializer,
    AgentContextVersionListItemSerializer,
    AgentContextVersionSerializer,
    ContextDiffQuerySerializer,
    ContextDiffSerializer,
    ContextRollbackSerializer,
    ContextVersionsQuerySerializer,
    ContextWriteSerializer,
)

_ERROR_TEXT = {
    400: "Invalid input (per-field errors; `nul_character`, `nesting_too_deep`, `invalid_data` for data).",
    401: "Not authenticated.",
    403: "The caller's role in the workspace is read-only.",
    404: "The project or context does not exist or is not visible to the caller.",
    409: "Conflict with the context's state.",
    413: "`payload_too_large`: the data exceeds AGENT_CONTEXT_MAX_BYTES serialized (`max_bytes`, `size_bytes`).",
    429: "`rate_limited`: too many requests; see the Retry-After header.",
}


def _errors(*codes: int, **texts: str) -> dict[int, OpenApiResponse]:
    """Error responses for the schema with the contexts' texts; ``texts`` override one (key ``e409`` etc.)."""
    return error_responses(*codes, defaults=_ERROR_TEXT, **texts)


_VERSION_404 = (
    "The project or context is not visible, `version_not_found` (the context never had this version) or "
    "`version_pruned` (retention removed it)."
)
#: Most versions a page of ``GET …/versions?include_data=true`` holds (each may be AGENT_CONTEXT_MAX_BYTES of data).
VERSIONS_WITH_DATA_MAX_LIMIT = 10
#: A version number in a query: 1 … 2^31 - 1 (else 400).
_VERSION_NUMBER = {"type": "integer", "minimum": 1, "maximum": contexts.MAX_VERSION}
_VERSION_PATH = OpenApiParameter("n", OpenApiTypes.INT, OpenApiParameter.PATH, description="Version number.")


@extend_schema(tags=["contexts"])
class AgentContextViewSet(RateLimitMixin, ProjectScopedMixin, viewsets.GenericViewSet):
    """Versioned shared contexts of one project."""

    permission_classes = [IsAuthenticated, CanWriteProject]
    serializer_class = AgentContextSerializer
    filterset_class = AgentContextFilterSet
    rate_limits = {
        "list": "120/m",
        "retrieve": "240/m",
        "create": "30/m",
        "destroy": "30/m",
        "write": "120/m",
        "rollback": "30/m",
        "versions": "120/m",
        "version": "240/m",
        "pin": "60/m",
        "unpin": "60/m",
        "diff": "120/m",
    }

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AgentContext.objects.none()
        if self.action in ("list", "retrieve"):
            queryset = contexts.context_queryset(with_data=self.action == "retrieve")
        else:
            queryset = AgentContext.objects.all()
        return queryset.filter(project=self.project)

    def get_object(self) -> AgentContext:
        """The URL's context within the URL's project (404 otherwise); query filters do not apply."""
        context = get_object_or_404(self.get_queryset(), pk=self.kwargs["context_id"])
        self.check_object_permissions(self.request, context)
        return context

    def _detail(self, context: AgentContext) -> dict:
        return AgentContextDetailSerializer(contexts.context_queryset(with_data=True).get(pk=context.pk)).data

    # --- the context ---

    @extend_schema(
        operation_id="contexts_list",
        summary="List contexts",
        description="Contexts of the project (without data), filterable by owning agent and name.",
        responses={200: AgentContextSerializer(many=True), **_errors(400, 401, 404, 429)},
    )
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(AgentContextSerializer(page, many=True).data)

    @extend_schema(
        operation_id="contexts_create",
        summary="Create a context",
        description="Creates a context; `data` (default `{}`) becomes version 1.",
        request=AgentContextCreateSerializer,
        responses={
            201: AgentContextDetailSerializer,
            **_errors(400, 401, 403, 404, 409, 413, 429, e409="`context_exists`: the name is taken here."),
        },
    )
    def create(self, request, *args, **kwargs):
        serializer = AgentContextCreateSerializer(data=request.data, project=self.project)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        context = contexts.context_create(
            project=self.project, name=values["name"], instance=values["instance_id"], data=values["data"],
            actor=request.user, change_description=values["change_description"],
        )
        return Response(self._detail(context), status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="contexts_retrieve",
        summary="Get a context",
        description="The context with its current data, current version and version counts.",
        responses={200: AgentContextDetailSerializer, **_errors(401, 404, 429)},
    )
    def retrieve(self, request, *args, **kwargs):
        return Response(AgentContextDetailSerializer(self.get_object()).data)

    @extend_schema(
        operation_id="contexts_destroy",
        summary="Delete a context",
        description="Deletes the context and its whole history.",
        responses={204: None, **_errors(401, 403, 404, 429)},
    )
    def destroy(self, request, *args, **kwargs):
        contexts.context_delete(self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    # --- versions ---

    @extend_schema(
        operation_id="contexts_write",
        summary="Write a new version",
        description=(
            "Appends version `current_version + 1`. `mode=replace` stores `data` as is; `mode=merge` applies "
            "`data` as an RFC 7396 JSON Merge Patch to the current data (`null` deletes a key). With "
            "`expected_version`, the write is refused unless the context is still at that version."
        ),
        request=ContextWriteSerializer,
        responses={
            201: AgentContextVersionDetailSerializer,
            **_errors(
                400, 401, 403, 404, 409, 413, 429,
                e409="`version_conflict`: `expected_version` is stale; the body carries `current_version`.",
            ),
        },
    )
    def write(self, request, *args, **kwargs):
        serializer = ContextWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        version = contexts.context_write(
            self.get_object(), values["data"], actor=request.user, change_description=values["change_description"],
            expected_version=values["expected_version"], mode=values["mode"],
        )
        return Response(AgentContextVersionDetailSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="contexts_rollback",
        summary="Roll back to a version",
        description=(
            "Appends a new version whose data equals `target_version`'s (`restored_from`); no version is lost."
        ),
        request=ContextRollbackSerializer,
        responses={
            201: AgentContextVersionDetailSerializer,
            **_errors(
                400, 401, 403, 404, 409, 413, 429,
                e404=_VERSION_404,
                e409="`already_current`: the target is the current version.",
            ),
        },
    )
    def rollback(self, request, *args, **kwargs):
        serializer = ContextRollbackSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        version = contexts.context_rollback(
            self.get_object(), values["target_version"], actor=request.user,
            change_description=values["change_description"],
        )
        return Response(AgentContextVersionDetailSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="contexts_versions_list",
        summary="List versions",
        filters=False,
        description=(
            "Retained versions, newest first; without data unless `include_data=true`, whose pages hold at most "
            f"{VERSIONS_WITH_DATA_MAX_LIMIT} versions (a larger `limit` counts as that)."
        ),
        parameters=[
            OpenApiParameter("include_data", OpenApiTypes.BOOL, description="Include each version's data."),
        ],
        responses={200: AgentContextVersionListItemSerializer(many=True), **_errors(400, 401, 404, 429)},
    )
    def versions(self, request, *args, **kwargs):
        query = ContextVersionsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        include_data = query.validated_data["include_data"]
        if include_data:  # each version may hold AGENT_CONTEXT_MAX_BYTES: bound the page's size
            self.paginator.max_page_size = VERSIONS_WITH_DATA_MAX_LIMIT
        page = self.paginate_queryset(contexts.context_versions(self.get_object(), include_data=include_data))
        serializer_class = AgentContextVersionDetailSerializer if include_data else AgentContextVersionSerializer
        return self.get_paginated_response(serializer_class(page, many=True).data)

    @extend_schema(
        operation_id="contexts_versions_retrieve",
        summary="Get a version",
        parameters=[_VERSION_PATH],
        responses={200: AgentContextVersionDetailSerializer, **_errors(401, 404, 429, e404=_VERSION_404)},
    )
    def version(self, request, *args, n: int, **kwargs):
        version = contexts.context_read(self.get_object(), n)
        return Response(AgentContextVersionDetailSerializer(version).data)

    @extend_schema(
        operation_id="contexts_versions_pin",
        summary="Pin a version",
        description="A pinned version is never removed by retention. Pinning twice is a no-op.",
        request=None,
        parameters=[_VERSION_PATH],
        responses={200: AgentContextVersionSerializer, **_errors(401, 403, 404, 429, e404=_VERSION_404)},
    )
    def pin(self, request, *args, n: int, **kwargs):
        version = contexts.context_pin(self.get_object(), n, actor=request.user)
        return Response(AgentContextVersionSerializer(version).data)

    @extend_schema(
        operation_id="contexts_versions_unpin",
        summary="Unpin a version",
        description="Retention may remove the version again (with the next write, if it is old enough).",
        request=None,
        parameters=[_VERSION_PATH],
        responses={200: AgentContextVersionSerializer, **_errors(401, 403, 404, 429, e404=_VERSION_404)},
    )
    def unpin(self, request, *args, n: int, **kwargs):
        version = contexts.context_unpin(self.get_object(), n, actor=request.user)
        return Response(AgentContextVersionSerializer(version).data)

    @extend_schema(
        operation_id="contexts_diff",
        summary="Diff two versions",
        description="The RFC 6902 JSON Patch that turns version `from`'s data into version `to`'s.",
        parameters=[
            OpenApiParameter("from", _VERSION_NUMBER, required=True, description="Base version."),
            OpenApiParameter("to", _VERSION_NUMBER, required=True, description="Target version."),
        ],
        responses={200: ContextDiffSerializer, **_errors(400, 401, 404, 429, e404=_VERSION_404)},
    )
    def diff(self, request, *args, **kwargs):
        query = ContextDiffQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        first, second = query.validated_data["from"], query.validated_data["to"]
        patch = contexts.context_diff(self.get_object(), first, second)
        return Response({"from": first, "to": second, "patch": patch})
