"""REST endpoints for workspaces, projects, issues, and the token login (`/api/v1/...`)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from knox.models import AuthToken
from rest_framework import mixins, viewsets
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from syndarix.api.authentication import TokenAuthentication
from syndarix.api.clientip import client_ip
from syndarix.api.ratelimit import RateLimitMixin
from syndarix.api.schema import MessageSerializer, error_responses

from .filtersets import IssueFilterSet, ProjectFilterSet, WorkspaceFilterSet
from .models import Issue
from .permissions import CanWriteProject, ProjectPermission, ProjectScopedMixin, WorkspacePermission
from .selectors import auth_token_queryset, issue_queryset, project_queryset, workspace_queryset
from .serializers import (
    AuthCredentialsSerializer,
    AuthTokenInfoSerializer,
    AuthTokenSerializer,
    IssueSerializer,
    ProjectSerializer,
    WorkspaceSerializer,
)
from .services import (
    auth_login,
    auth_login_check_rate,
    auth_token_revoke,
    auth_tokens_revoke_all,
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


TOKEN_LOGIN_DESCRIPTION = (
    "Exchange a username and password for a new API token (one per login or device; earlier tokens stay valid). "
    "Send it as `Authorization: Token <token>` (or `Bearer <token>`). It is shown only in this answer (only its "
    "digest is stored) and expires after `AUTH_TOKEN_TTL_HOURS` (30 days by default). Throttled with sliding "
    "windows: at most 10 logins per client IP in any minute, and per account (whatever the IP) 5 in any minute "
    "and 30 in any hour."
)


@extend_schema(
    tags=["auth"],
    summary="Obtain an API token",
    description=TOKEN_LOGIN_DESCRIPTION,
    request=AuthCredentialsSerializer,
    responses={200: AuthTokenSerializer, **error_responses(400, 429, 503, e400="Missing fields or bad credentials.")},
    auth=[],
)
class AuthTokenView(RateLimitMixin, APIView):
    """Exchange a username and password for a new API token: ``{"token", "token_key", "expiry"}``."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def post(self, request):
        serializer = AuthCredentialsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        username, password = serializer.validated_data["username"], serializer.validated_data["password"]
        self._rate_usage = auth_login_check_rate(ip=client_ip(request), username=username)
        token, secret = auth_login(request=request, username=username, password=password)
        answer = {"token": secret, "token_key": token.token_key, "expiry": token.expiry}
        return Response(AuthTokenSerializer(answer).data)


@extend_schema_view(
    list=extend_schema(
        summary="List your API tokens",
        description="Your unexpired tokens, newest first, without their secrets; `current` marks this request's.",
        responses={200: AuthTokenInfoSerializer},
    ),
    destroy=extend_schema(
        summary="Revoke one of your API tokens",
        description="By its `token_key`; the next request with it is 401.",
        responses={204: OpenApiResponse(description="Revoked.")},
    ),
)
@extend_schema(tags=["auth"])
class AuthTokenViewSet(RateLimitMixin, mixins.ListModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """The caller's API tokens: list them, revoke one."""

    serializer_class = AuthTokenInfoSerializer
    permission_classes = [IsAuthenticated]
    lookup_field = "token_key"
    lookup_url_kwarg = "token_key"
    rate_limits = {"list": "60/m", "destroy": "30/m"}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return AuthToken.objects.none()
        return auth_token_queryset(self.request.user)

    def get_object(self):
        return self.kwargs[self.lookup_url_kwarg]

    def perform_destroy(self, token_key):
        auth_token_revoke(user=self.request.user, token_key=token_key)


@extend_schema(
    tags=["auth"],
    summary="Log out this token",
    description="Revokes the token this request is authenticated with (token authentication only).",
    request=None,
    responses={200: MessageSerializer},
)
class LogoutView(RateLimitMixin, APIView):
    """``POST /auth/logout``: revoke the request's own token."""

    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]
    rate_limits = {"post": "30/m"}

    def post(self, request):
        auth_token_revoke(user=request.user, token_key=request.auth.token_key)
        return Response({"success": True, "message": "Token revoked."})


@extend_schema(
    tags=["auth"],
    summary="Log out everywhere",
    description="Revokes every API token of the caller (a password change does the same).",
    request=None,
    responses={200: MessageSerializer},
)
class LogoutAllView(RateLimitMixin, APIView):
    """``POST /auth/logout-all``: revoke all of the caller's tokens."""

    permission_classes = [IsAuthenticated]
    rate_limits = {"post": "10/m"}

    def post(self, request):
        count = auth_tokens_revoke_all(user=request.user)
        return Response({"success": True, "message": f"{count} token{'s' if count != 1 else ''} revoked."})


@extend_schema_view(
    list=extend_schema(
        summary="List workspaces",
        description="Workspaces you are a member of or own a project in (superusers: all).",
        responses={200: WorkspaceSerializer},
    ),
    create=extend_schema(
        summary="Create a workspace",
        description="Superusers only.",
        responses={201: WorkspaceSerializer, **error_responses(403)},
    ),
    retrieve=extend_schema(
        summary="Get a workspace", responses={200: WorkspaceSerializer}
    ),
    partial_update=extend_schema(
        summary="Update a workspace",
        description=(
            "Superusers and the workspace's admins; only superusers change `slug` (unique across tenants, so an "
            "admin cannot probe for other tenants' slugs) and `max_concurrent_agents` (403 otherwise)."
        ),
        responses={200: WorkspaceSerializer, **error_responses(403)},
    ),
    destroy=extend_schema(
        summary="Delete a workspace",
        description="Superusers only, and only once the workspace has no projects (else 409 `workspace_not_empty`).",
        responses={204: OpenApiResponse(description="Deleted."), **error_responses(403, 409)},
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
        responses={200: ProjectSerializer},
    ),
    create=extend_schema(
        summary="Create a project",
        description=(
            "You become its owner. Needs write access to the workspace (admin or operator member, or superuser): "
            "a viewer gets 403; a workspace you cannot see is a 400 on `workspace_id`."
        ),
        responses={201: ProjectSerializer, **error_responses(403)},
    ),
    retrieve=extend_schema(
        summary="Get a project", responses={200: ProjectSerializer}
    ),
    partial_update=extend_schema(
        summary="Update a project",
        description="Owner, workspace admins and operators, superusers. The workspace cannot change.",
        responses={200: ProjectSerializer, **error_responses(403)},
    ),
    destroy=extend_schema(
        summary="Delete a project",
        description=(
            "Deletes its issues, and its terminated agents with their ledger. Refused with 409 "
            "`project_has_live_agents` while any agent is not terminated."
        ),
        responses={204: OpenApiResponse(description="Deleted."), **error_responses(403, 409)},
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
        summary="List a project's issues", responses={200: IssueSerializer}
    ),
    create=extend_schema(
        summary="Create an issue",
        description="`assigned_agent_id` must be a live agent of this project (else 400).",
        responses={201: IssueSerializer, **error_responses(403)},
    ),
    retrieve=extend_schema(summary="Get an issue", responses={200: IssueSerializer}),
    partial_update=extend_schema(
        summary="Update an issue",
        description="Title, body, status, or `assigned_agent_id` (a live agent of this project, or null).",
        responses={200: IssueSerializer, **error_responses(403)},
    ),
    destroy=extend_schema(
        summary="Delete an issue",
        responses={204: OpenApiResponse(description="Deleted."), **error_responses(403)},
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
