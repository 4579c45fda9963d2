"""REST endpoints for workspaces, projects, issues, and the token login (`/api/v1/...`)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from syndarix.api.ratelimit import RateLimitMixin
from syndarix.api.schema import error_responses

from .filtersets import IssueFilterSet, ProjectFilterSet, WorkspaceFilterSet
from .models import Issue
from .permissions import CanWriteProject, ProjectPermission, ProjectScopedMixin, WorkspacePermission
from .selectors import issue_queryset, project_queryset, workspace_queryset
from .serializers import (
    AuthCredentialsSerializer,
    AuthTokenSerializer,
    IssueSerializer,
    ProjectSerializer,
    WorkspaceSerializer,
)
from .services import (
    issue_create,
    issue_update,
    project_create,
    project_delete,
    project_update,
    workspace_create,
    workspace_delete,
    workspace_update,
)

#: Methods the CRUD viewsets answer (no PUT: partial updates only, as in the agent API).
CRUD_METHODS = ["get", "post", "patch", "delete", "head", "options"]

READ_LIMITS = {"list": "60/m", "retrieve": "60/m"}


@extend_schema(
    tags=["auth"],
    summary="Obtain an API token",
    description=(
        "Exchange a username and password for the user's API token (created on first use). Send it as "
        "`Authorization: Token <token>`. Rate limited to 10 requests per minute per client IP."
    ),
    request=AuthCredentialsSerializer,
    responses={200: AuthTokenSerializer, **error_responses(400, 429, e400="Missing fields or bad credentials.")},
    auth=[],
)
class AuthTokenView(RateLimitMixin, APIView):
    """Exchange a username and password for an API token: {"token": "..."}."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    rate_limits = {"post": "10/m"}

    def post(self, request):
        serializer = AuthCredentialsSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        token, _ = Token.objects.get_or_create(user=serializer.validated_data["user"])
        return Response(AuthTokenSerializer({"token": token.key}).data)


@extend_schema_view(
    list=extend_schema(
        summary="List workspaces",
        description="Workspaces you are a member of or own a project in (superusers: all).",
        responses={200: WorkspaceSerializer, **error_responses(400, 401, 429)},
    ),
    create=extend_schema(
        summary="Create a workspace",
        description="Superusers only.",
        responses={201: WorkspaceSerializer, **error_responses(400, 401, 403, 429)},
    ),
    retrieve=extend_schema(
        summary="Get a workspace", responses={200: WorkspaceSerializer, **error_responses(401, 404, 429)}
    ),
    partial_update=extend_schema(
        summary="Update a workspace",
        description=(
            "Superusers and the workspace's admins; only superusers change `slug` (unique across tenants, so an "
            "admin cannot probe for other tenants' slugs) and `max_concurrent_agents` (403 otherwise)."
        ),
        responses={200: WorkspaceSerializer, **error_responses(400, 401, 403, 404, 429)},
    ),
    destroy=extend_schema(
        summary="Delete a workspace",
        description="Superusers only, and only once the workspace has no projects (else 409 `workspace_not_empty`).",
        responses={204: OpenApiResponse(description="Deleted."), **error_responses(401, 403, 404, 409, 429)},
    ),
)
@extend_schema(tags=["workspaces"])
class WorkspaceViewSet(RateLimitMixin, viewsets.ModelViewSet):
    """Workspaces (tenants) you are a member of or own a project in; superusers see all."""

    serializer_class = WorkspaceSerializer
    filterset_class = WorkspaceFilterSet
    permission_classes = [IsAuthenticated, WorkspacePermission]
    http_method_names = CRUD_METHODS
    lookup_url_kwarg = "workspace_id"
    lookup_value_converter = "uuid"
    rate_limits = {**READ_LIMITS, "create": "10/m", "partial_update": "30/m", "destroy": "10/m"}

    def get_queryset(self):
        return workspace_queryset(self.request.user)

    def perform_create(self, serializer):
        serializer.instance = workspace_create(**serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = workspace_update(serializer.instance, data=serializer.validated_data)

    def perform_destroy(self, instance):
        workspace_delete(workspace=instance)


@extend_schema_view(
    list=extend_schema(
        summary="List projects",
        description="Projects you own, or in workspaces you are a member of (superusers: all).",
        responses={200: ProjectSerializer, **error_responses(400, 401, 429)},
    ),
    create=extend_schema(
        summary="Create a project",
        description=(
            "You become its owner. Needs write access to the workspace (admin or operator member, or superuser): "
            "a viewer gets 403; a workspace you cannot see is a 400 on `workspace_id`."
        ),
        responses={201: ProjectSerializer, **error_responses(400, 401, 403, 429)},
    ),
    retrieve=extend_schema(
        summary="Get a project", responses={200: ProjectSerializer, **error_responses(401, 404, 429)}
    ),
    partial_update=extend_schema(
        summary="Update a project",
        description="Owner, workspace admins and operators, superusers. The workspace cannot change.",
        responses={200: ProjectSerializer, **error_responses(400, 401, 403, 404, 429)},
    ),
    destroy=extend_schema(
        summary="Delete a project",
        description=(
            "Deletes its issues, and its terminated agents with their ledger. Refused with 409 "
            "`project_has_live_agents` while any agent is not terminated."
        ),
        responses={204: OpenApiResponse(description="Deleted."), **error_responses(401, 403, 404, 409, 429)},
    ),
)
@extend_schema(tags=["projects"])
class ProjectViewSet(RateLimitMixin, viewsets.ModelViewSet):
    """Projects you own or that belong to a workspace you are a member of; superusers see all."""

    serializer_class = ProjectSerializer
    filterset_class = ProjectFilterSet
    permission_classes = [IsAuthenticated, ProjectPermission]
    http_method_names = CRUD_METHODS
    lookup_url_kwarg = "project_id"
    lookup_value_converter = "uuid"
    rate_limits = {**READ_LIMITS, "create": "20/m", "partial_update": "30/m", "destroy": "10/m"}

    def get_queryset(self):
        return project_queryset(self.request.user)

    def perform_create(self, serializer):
        serializer.instance = project_create(owner=self.request.user, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = project_update(serializer.instance, data=serializer.validated_data)

    def perform_destroy(self, instance):
        project_delete(project=instance)


@extend_schema_view(
    list=extend_schema(
        summary="List a project's issues", responses={200: IssueSerializer, **error_responses(400, 401, 404, 429)}
    ),
    create=extend_schema(
        summary="Create an issue",
        description="`assigned_agent_id` must be a live agent of this project (else 400).",
        responses={201: IssueSerializer, **error_responses(400, 401, 403, 404, 429)},
    ),
    retrieve=extend_schema(summary="Get an issue", responses={200: IssueSerializer, **error_responses(401, 404, 429)}),
    partial_update=extend_schema(
        summary="Update an issue",
        description="Title, body, status, or `assigned_agent_id` (a live agent of this project, or null).",
        responses={200: IssueSerializer, **error_responses(400, 401, 403, 404, 429)},
    ),
    destroy=extend_schema(
        summary="Delete an issue",
        responses={204: OpenApiResponse(description="Deleted."), **error_responses(401, 403, 404, 429)},
    ),
)
@extend_schema(tags=["issues"])
class IssueViewSet(RateLimitMixin, ProjectScopedMixin, viewsets.ModelViewSet):
    """The issues of one project. Anyone who can see the project reads; its owner, the workspace's admins and
    operators, and superusers write (viewers get 403)."""

    serializer_class = IssueSerializer
    filterset_class = IssueFilterSet
    permission_classes = [IsAuthenticated, CanWriteProject]
    http_method_names = CRUD_METHODS
    lookup_url_kwarg = "issue_id"
    lookup_value_converter = "uuid"
    rate_limits = {**READ_LIMITS, "create": "30/m", "partial_update": "30/m", "destroy": "30/m"}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Issue.objects.none()
        return issue_queryset(self.project)

    def perform_create(self, serializer):
        serializer.instance = issue_create(project=self.project, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = issue_update(serializer.instance, data=serializer.validated_data)
