"""API representations of workspaces, projects and issues, and the token login."""

from __future__ import annotations

from django.utils.text import slugify
from rest_framework import exceptions, serializers

from .choices import WorkspaceRole
from .models import Issue, Project, Workspace
from .selectors import workspace_queryset, workspaces_writable_by
from .services import PROJECT_SLUG_TAKEN


class WorkspaceSerializer(serializers.ModelSerializer):
    """A workspace (tenant). ``role`` is the caller's membership role, or null.

    ``max_concurrent_agents`` is a quota: only superusers may set it (others get 403). ``slug`` is unique
    across all tenants, so only superusers may choose or change it (others get 403 before any uniqueness
    check): a workspace admin cannot learn another tenant's slugs from a "slug already exists" error.
    """

    # No model UniqueValidator: it would answer "already exists" before validate_slug could refuse a non-superuser.
    # The service (``workspace_create`` / ``workspace_update``) checks uniqueness and answers 400 ``unique``.
    slug = serializers.SlugField(max_length=Workspace._meta.get_field("slug").max_length)

    role = serializers.ChoiceField(
        choices=WorkspaceRole.choices, read_only=True, allow_null=True, help_text="Your role here, or null."
    )
    agent_limit = serializers.IntegerField(read_only=True, help_text="Effective limit of live agents.")

    class Meta:
        model = Workspace
        fields = ["id", "name", "slug", "max_concurrent_agents", "agent_limit", "role", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_slug(self, value):
        changed = self.instance is None or value != self.instance.slug
        if changed and not self.context["request"].user.is_superuser:
            raise exceptions.PermissionDenied("Only superusers may choose a workspace's slug.")
        return value

    def validate_max_concurrent_agents(self, value):
        user = self.context["request"].user
        changed = self.instance is None or value != self.instance.max_concurrent_agents
        if changed and not user.is_superuser:
            raise exceptions.PermissionDenied("Only superusers may set a workspace's agent limit.")
        return value


class ProjectSerializer(serializers.ModelSerializer):
    """A project. ``workspace_id`` is set on create (the caller needs write access there) and fixed after.

    ``slug`` defaults to the slugified name and is unique per workspace; the owner is the creator.
    """

    workspace_id = serializers.PrimaryKeyRelatedField(
        source="workspace", queryset=Workspace.objects.none(), help_text="Workspace of the project (fixed)."
    )
    workspace_slug = serializers.CharField(source="workspace.slug", read_only=True)
    workspace_name = serializers.CharField(source="workspace.name", read_only=True)
    owner_id = serializers.IntegerField(read_only=True, help_text="The creator's user id.")
    owner_username = serializers.CharField(source="owner.get_username", read_only=True)
    slug = serializers.SlugField(max_length=100, required=False, help_text="Defaults to the slugified name.")

    class Meta:
        model = Project
        fields = [
            "id",
            "workspace_id",
            "workspace_slug",
            "workspace_name",
            "owner_id",
            "owner_username",
            "name",
            "slug",
            "description",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        validators: list = []  # slug uniqueness per workspace is checked in validate()

    def get_fields(self):
        fields = super().get_fields()
        request = self.context.get("request")
        if request is not None:
            # Body references resolve only within the caller's reach: an unseen workspace is "does not exist".
            fields["workspace_id"].queryset = workspace_queryset(request.user)
        return fields

    def validate_workspace_id(self, workspace: Workspace) -> Workspace:
        if self.instance is not None:
            if workspace.pk != self.instance.workspace_id:
                raise serializers.ValidationError("A project cannot move to another workspace.", code="immutable")
            return workspace
        user = self.context["request"].user
        if not workspaces_writable_by(user).filter(pk=workspace.pk).exists():
            raise exceptions.PermissionDenied("Your role in this workspace is read-only.")
        return workspace

    def validate(self, attrs):
        workspace = attrs.get("workspace") or getattr(self.instance, "workspace", None)
        if self.instance is None and "slug" not in attrs:
            attrs["slug"] = slugify(attrs.get("name", ""))[:100]
            if not attrs["slug"]:
                raise serializers.ValidationError({"slug": ["Give a slug: the name has no slug-able characters."]})
        slug = attrs.get("slug")
        if workspace is not None and slug is not None:
            clash = Project.objects.filter(workspace=workspace, slug=slug)
            if self.instance is not None:
                clash = clash.exclude(pk=self.instance.pk)
            if clash.exists():
                raise serializers.ValidationError({"slug": [serializers.ErrorDetail(PROJECT_SLUG_TAKEN, "unique")]})
        return attrs


#: The agent model issues are assigned to, reached through the relation (tenancy imports no other app).
AssignedAgent = Issue._meta.get_field("assigned_agent").related_model


class IssueSerializer(serializers.ModelSerializer):
    """An issue in the URL's project; ``assigned_agent_id`` must be a live agent of the same project."""

    project_id = serializers.UUIDField(read_only=True)
    assigned_agent_id = serializers.PrimaryKeyRelatedField(
        source="assigned_agent",
        queryset=AssignedAgent.objects.all(),
        allow_null=True,
        required=False,
        error_messages={"does_not_exist": "Issues can only be assigned to an agent of the same project."},
        help_text="An agent of this project (null to unassign).",
    )
    assigned_agent_name = serializers.CharField(source="assigned_agent.name", read_only=True, allow_null=True)

    class Meta:
        model = Issue
        fields = [
            "id",
            "project_id",
            "title",
            "body",
            "status",
            "assigned_agent_id",
            "assigned_agent_name",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def get_fields(self):
        fields = super().get_fields()
        project = self.context.get("project")
        if project is not None:
            # Another project's agent reads exactly like a missing one.
            fields["assigned_agent_id"].queryset = AssignedAgent.objects.filter(project=project)
        return fields

    def validate_assigned_agent_id(self, agent):
        if agent is not None and agent.is_terminated:
            raise serializers.ValidationError("A terminated agent cannot be assigned.", code="agent_terminated")
        return agent


class AuthCredentialsSerializer(serializers.Serializer):
    """Credentials for ``POST /api/v1/auth/token`` (checked by ``projects.services.auth_login``)."""

    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False, style={"input_type": "password"})


class AuthTokenSerializer(serializers.Serializer):
    """``{"token", "token_key", "expiry"}``: send the token as ``Authorization: Token <token>``.

    The token is shown this once (only its digest is stored); ``token_key`` identifies it in
    ``GET /auth/tokens``; ``expiry`` is null when tokens do not expire (``AUTH_TOKEN_TTL_HOURS=0``).
    """

    token = serializers.CharField(help_text="The API token; shown only in this answer.")
    token_key = serializers.CharField(help_text="The token's first 15 characters: its identifier, not a secret.")
    expiry = serializers.DateTimeField(allow_null=True, help_text="When the token stops working (null: never).")


class AuthTokenInfoSerializer(serializers.Serializer):
    """One of the caller's API tokens, without its secret: identifier, creation, expiry, and whether it is the
    token of this request."""

    token_key = serializers.CharField(read_only=True, help_text="The token's first 15 characters.")
    created = serializers.DateTimeField(read_only=True)
    expiry = serializers.DateTimeField(read_only=True, allow_null=True)
    current = serializers.SerializerMethodField(help_text="True for the token this request is authenticated with.")

    def get_current(self, token) -> bool:
        auth = getattr(self.context.get("request"), "auth", None)
        return getattr(auth, "digest", None) == token.digest
