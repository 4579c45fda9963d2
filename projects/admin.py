"""Django admin for tenancy and work items: workspaces (with their members), projects and issues; API tokens."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from knox.models import AuthToken

from .models import Issue, Project, Workspace, WorkspaceMembership


class WorkspaceMembershipInline(admin.TabularInline):
    model = WorkspaceMembership
    extra = 0
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "agent_limit_display", "member_count", "project_count", "created_at")
    list_select_related = False  # no foreign keys to join; the counts are annotations
    search_fields = ("name", "slug")
    list_filter = ("created_at",)
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("id", "created_at", "updated_at")
    fields = ("name", "slug", "max_concurrent_agents", "id", "created_at", "updated_at")
    inlines = (WorkspaceMembershipInline,)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            member_count=Count("memberships", distinct=True), project_count=Count("projects", distinct=True)
        )

    @admin.display(description="Agent limit")
    def agent_limit_display(self, obj: Workspace) -> str:
        if obj.max_concurrent_agents is None:
            return f"{obj.agent_limit} (default)"
        return str(obj.max_concurrent_agents)

    @admin.display(description="Members", ordering="member_count")
    def member_count(self, obj: Workspace) -> int:
        return obj.member_count

    @admin.display(description="Projects", ordering="project_count")
    def project_count(self, obj: Workspace):
        url = reverse("admin:projects_project_changelist") + f"?workspace__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.project_count)


@admin.register(WorkspaceMembership)
class WorkspaceMembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "workspace", "role", "created_at")
    list_select_related = ("user", "workspace")
    list_filter = ("role", "workspace")
    search_fields = ("user__username", "user__email", "workspace__name", "workspace__slug")
    autocomplete_fields = ("user", "workspace")
    readonly_fields = ("id", "created_at", "updated_at")


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "workspace", "slug", "owner", "agent_count", "issue_count", "created_at")
    list_select_related = ("workspace", "owner")
    list_filter = ("workspace",)
    search_fields = ("name", "slug", "description", "workspace__name", "owner__username")
    prepopulated_fields = {"slug": ("name",)}
    autocomplete_fields = ("workspace", "owner")
    readonly_fields = ("id", "created_at", "updated_at")
    fields = ("workspace", "name", "slug", "owner", "description", "id", "created_at", "updated_at")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            agent_count=Count("agents", distinct=True), issue_count=Count("issues", distinct=True)
        )

    def get_readonly_fields(self, request, obj=None):
        """The workspace is chosen once: moving a project would carry its agents, contexts and issues into
        another tenant (the API refuses it too)."""
        readonly = super().get_readonly_fields(request, obj)
        return ("workspace", *readonly) if obj is not None else readonly

    @admin.display(description="Agents", ordering="agent_count")
    def agent_count(self, obj: Project):
        url = reverse("admin:agents_agentinstance_changelist") + f"?project__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.agent_count)

    @admin.display(description="Issues", ordering="issue_count")
    def issue_count(self, obj: Project):
        url = reverse("admin:projects_issue_changelist") + f"?project__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.issue_count)


@admin.register(Issue)
class IssueAdmin(admin.ModelAdmin):
    list_display = ("title", "project", "status", "assigned_agent", "created_at")
    list_select_related = ("project", "assigned_agent")
    list_filter = ("status", ("assigned_agent", admin.EmptyFieldListFilter), "project__workspace", "project")
    search_fields = ("title", "body", "project__name", "assigned_agent__name")
    autocomplete_fields = ("project", "assigned_agent")
    readonly_fields = ("id", "created_at", "updated_at")
    fields = ("project", "title", "body", "status", "assigned_agent", "id", "created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        """An issue stays in its project (as in the API, where the project is the URL's)."""
        readonly = super().get_readonly_fields(request, obj)
        return ("project", *readonly) if obj is not None else readonly

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "assigned_agent" and formfield is not None:
            formfield.widget.can_add_related = False  # agents are spawned, not added from a popup
        return formfield


if admin.site.is_registered(AuthToken):
    admin.site.unregister(AuthToken)  # knox's own lists the digest and creates tokens from a form


@admin.register(AuthToken)
class AuthTokenAdmin(admin.ModelAdmin):
    """API tokens, listed without their secrets: the public ``token_key``, never a column with the digest (a
    SHA-512 of the token, which knox uses as the row's key and so the bulk actions' checkbox value).

    Tokens are created by logging in (``POST /api/v1/auth/token``); here they can only be looked at and
    revoked (deleted, alone or in bulk).
    """

    list_display = ("token_key", "user", "created", "expiry", "is_expired")
    list_display_links = None
    list_select_related = ("user",)
    list_filter = ("created", "expiry")
    search_fields = ("token_key", "user__username")
    ordering = ("-created",)

    @admin.display(description="Expired", boolean=True)
    def is_expired(self, obj: AuthToken) -> bool:
        return obj.expiry is not None and obj.expiry <= timezone.now()

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
