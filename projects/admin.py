"""Django admin for tenancy and work items: workspaces (with their members), projects and issues; API tokens; and
the admin's tenancy rule, ``WorkspaceScopedAdminMixin``, which every admin of workspace-owned rows uses.

Workspaces and projects are saved through their services (``workspace_create`` / ``workspace_update``,
``project_create`` / ``project_update``), so a slug taken by a concurrent request is a form error, not a server error.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.db.models import Count, Model, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from knox.models import AuthToken

from syndarix.admin_site import ObjectSectionsAdminMixin, ServiceSaveAdminMixin

from . import services
from .choices import WRITE_ROLES, WorkspaceRole
from .models import Issue, Project, Workspace, WorkspaceMembership
from .selectors import member_workspace_ids


def workspace_scope(user, queryset: QuerySet, path: str, *, roles=None) -> QuerySet:
    """``queryset`` narrowed to the rows ``user`` may see in the admin: all of them for superusers, else those whose
    workspace (reached from the row by the lookup ``path``: ``"workspace"``, ``"project__workspace"``, ``"pk"`` for
    workspaces themselves) the user is a member of, with a role in ``roles`` when given (``WRITE_ROLES``: where the
    user may act). Adds no query: the membership test is a subquery."""
    if user.is_superuser:
        return queryset
    return queryset.filter(**{f"{path}__in": member_workspace_ids(user, roles=roles)})


class WorkspaceScopedAdminMixin:
    """Tenancy in the admin (put it first in a ``ModelAdmin``'s bases): superusers see and act on every workspace;
    other staff see the rows of the workspaces they are members of and change them only where their role writes
    (``write_roles``: admin and operator by default, as in the API); staff who write in no workspace are offered
    nothing that writes. Their model permissions still say *what* they may do; this says *where*.

    ``workspace_path`` is the lookup from the model to its workspace. Everything goes through ``get_queryset``, so
    the list, change, history and delete pages, bulk actions, date drill-down, and the autocomplete and raw-id
    lookups that target this admin only ever hold the user's rows (anything else "doesn't exist"); list filters on
    relations offer only values present in those rows; a form's choices of a scoped model are the rows of the
    workspaces where the user writes; ``has_change_permission`` / ``has_delete_permission`` for an object say
    whether the user writes in its workspace (custom views ask ``can_write``).
    """

    workspace_path = "workspace"
    write_roles = WRITE_ROLES

    def scope(self, request, queryset: QuerySet, *, write: bool = False) -> QuerySet:
        """``queryset`` (of this admin's model) narrowed to the user's rows, or to those they may change."""
        return workspace_scope(request.user, queryset, self.workspace_path, roles=self.write_roles if write else None)

    def get_queryset(self, request):
        return self.scope(request, super().get_queryset(request))

    def workspace_id_of(self, obj: Model):
        """The id of ``obj``'s workspace, following ``workspace_path``."""
        *hops, last = self.workspace_path.split("__")
        for hop in hops:
            obj = getattr(obj, hop)
        return obj.pk if last == "pk" else getattr(obj, f"{last}_id")

    def can_write(self, request, obj: Model) -> bool:
        """May the user change ``obj`` (superuser, or a role in ``write_roles`` in its workspace)? Cached per request
        and workspace."""
        if request.user.is_superuser:
            return True
        workspace_id = self.workspace_id_of(obj)
        cache = request.__dict__.setdefault("_workspace_write", {})
        key = (workspace_id, frozenset(self.write_roles))
        if key not in cache:
            cache[key] = WorkspaceMembership.objects.filter(
                user=request.user, workspace_id=workspace_id, role__in=self.write_roles
            ).exists()
        return cache[key]

    def writes_anywhere(self, request) -> bool:
        """Does the user have a role in ``write_roles`` in some workspace (or is a superuser)? Without one, the admin
        offers no add page and no bulk action: they would only be refused. Cached per request."""
        if request.user.is_superuser:
            return True
        cache = request.__dict__.setdefault("_workspace_writes_anywhere", {})
        key = frozenset(self.write_roles)
        if key not in cache:
            cache[key] = WorkspaceMembership.objects.filter(user=request.user, role__in=self.write_roles).exists()
        return cache[key]

    def role_refusal(self, request, obj: Model) -> str:
        """Why the user's role keeps them from changing ``obj`` (``""`` when it does not): a read-only role in its
        workspace, named."""
        if self.can_write(request, obj):
            return ""
        role = WorkspaceMembership.objects.filter(user=request.user, workspace_id=self.workspace_id_of(obj)) \
            .values_list("role", flat=True).first()
        label = WorkspaceRole(role).label.lower() if role else "none"
        return f"Your role in its workspace is {label}: it may look, not change anything."

    def has_add_permission(self, request, *args) -> bool:
        return super().has_add_permission(request, *args) and self.writes_anywhere(request)

    def get_actions(self, request):
        """No bulk action for staff who write in no workspace (each would be refused row by row)."""
        return super().get_actions(request) if self.writes_anywhere(request) else {}

    def has_change_permission(self, request, obj=None) -> bool:
        return super().has_change_permission(request, obj) and (obj is None or self.can_write(request, obj))

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and (obj is None or self.can_write(request, obj))

    def delete_queryset(self, request, queryset) -> None:
        """The "delete selected" action: refused as a whole when a selected row is in a read-only workspace."""
        if self.scope(request, queryset, write=True).count() != queryset.count():
            raise PermissionDenied
        super().delete_queryset(request, queryset)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        model = db_field.remote_field.model
        target = self.admin_site.get_model_admin(model) if self.admin_site.is_registered(model) else None
        if isinstance(target, WorkspaceScopedAdminMixin) and "queryset" not in kwargs:
            rows = model._default_manager.all()
            kwargs["queryset"] = workspace_scope(request.user, rows, target.workspace_path, roles=self.write_roles)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_list_filter(self, request):
        """For staff who are not superusers, a filter on a relation lists only the values their rows hold (the
        plain filter would list every workspace's projects)."""
        filters = super().get_list_filter(request)
        if request.user.is_superuser:
            return filters
        return [self._related_only(entry) for entry in filters]

    def _related_only(self, entry: Any) -> Any:
        if not isinstance(entry, str):
            return entry
        try:
            field = get_fields_from_path(self.model, entry)[-1]
        except (FieldDoesNotExist, LookupError):
            return entry
        return (entry, admin.RelatedOnlyFieldListFilter) if field.is_relation else entry


class WorkspaceMembershipInline(admin.TabularInline):
    model = WorkspaceMembership
    extra = 0
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")


@admin.register(Workspace)
class WorkspaceAdmin(WorkspaceScopedAdminMixin, ServiceSaveAdminMixin, admin.ModelAdmin):
    list_display = ("name", "slug", "agent_limit_display", "member_count", "project_count", "created_at")
    list_select_related = False  # no foreign keys to join; the counts are annotations
    search_fields = ("name", "slug")
    list_filter = ("created_at",)
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("id", "created_at", "updated_at")
    fields = ("name", "slug", "max_concurrent_agents", "id", "created_at", "updated_at")
    inlines = (WorkspaceMembershipInline,)
    ordering = ("name",)  # stated: the counts' GROUP BY drops the model's default order (lists, autocomplete)
    workspace_path = "pk"
    write_roles = frozenset({WorkspaceRole.ADMIN})

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            member_count=Count("memberships", distinct=True), project_count=Count("projects", distinct=True)
        )

    def has_add_permission(self, request) -> bool:
        """Only superusers create tenants (as in the API)."""
        return request.user.is_superuser and super().has_add_permission(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        """Only superusers delete tenants (as in the API)."""
        return request.user.is_superuser and super().has_delete_permission(request, obj)

    def save_model(self, request, obj: Workspace, form, change: bool) -> None:
        if change:
            services.workspace_update(obj, data={name: form.cleaned_data[name] for name in form.changed_data
                                                 if name in services.WORKSPACE_FIELDS})
        else:
            self.adopt(obj, services.workspace_create(
                name=obj.name, slug=obj.slug, max_concurrent_agents=obj.max_concurrent_agents
            ))

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
class WorkspaceMembershipAdmin(WorkspaceScopedAdminMixin, admin.ModelAdmin):
    list_display = ("user", "workspace", "role", "created_at")
    list_select_related = ("user", "workspace")
    list_filter = ("role", "workspace")
    search_fields = ("user__username", "user__email", "workspace__name", "workspace__slug")
    autocomplete_fields = ("user", "workspace")
    readonly_fields = ("id", "created_at", "updated_at")
    write_roles = frozenset({WorkspaceRole.ADMIN})


@admin.register(Project)
class ProjectAdmin(WorkspaceScopedAdminMixin, ObjectSectionsAdminMixin, ServiceSaveAdminMixin, admin.ModelAdmin):
    """Projects; a project's page shows the sections other apps contribute (its agents' usage charts)."""

    list_display = ("name", "workspace", "slug", "owner", "agent_count", "issue_count", "created_at")
    list_select_related = ("workspace", "owner")
    list_filter = ("workspace",)
    search_fields = ("name", "slug", "description", "workspace__name", "owner__username")
    prepopulated_fields = {"slug": ("name",)}
    autocomplete_fields = ("workspace", "owner")
    readonly_fields = ("id", "created_at", "updated_at")
    fields = ("workspace", "name", "slug", "owner", "description", "id", "created_at", "updated_at")
    ordering = ("workspace__name", "name")  # stated: the counts' GROUP BY drops the model's default order

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            agent_count=Count("agents", distinct=True), issue_count=Count("issues", distinct=True)
        )

    def get_readonly_fields(self, request, obj=None):
        """The workspace and the owner are chosen once (``project_update`` changes neither): moving a project would
        carry its agents, contexts and issues into another tenant (the API refuses it too)."""
        readonly = super().get_readonly_fields(request, obj)
        return ("workspace", "owner", *readonly) if obj is not None else readonly

    def save_model(self, request, obj: Project, form, change: bool) -> None:
        if change:
            services.project_update(obj, data={name: form.cleaned_data[name] for name in form.changed_data
                                               if name in services.PROJECT_FIELDS})
        else:
            self.adopt(obj, services.project_create(
                workspace=obj.workspace, owner=obj.owner, name=obj.name, slug=obj.slug, description=obj.description
            ))

    @admin.display(description="Agents", ordering="agent_count")
    def agent_count(self, obj: Project):
        url = reverse("admin:agents_agentinstance_changelist") + f"?project__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.agent_count)

    @admin.display(description="Issues", ordering="issue_count")
    def issue_count(self, obj: Project):
        url = reverse("admin:projects_issue_changelist") + f"?project__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.issue_count)


@admin.register(Issue)
class IssueAdmin(WorkspaceScopedAdminMixin, admin.ModelAdmin):
    list_display = ("title", "project", "status", "assigned_agent", "created_at")
    list_select_related = ("project", "assigned_agent")
    list_filter = ("status", ("assigned_agent", admin.EmptyFieldListFilter), "project__workspace", "project")
    search_fields = ("title", "body", "project__name", "assigned_agent__name")
    autocomplete_fields = ("project", "assigned_agent")
    readonly_fields = ("id", "created_at", "updated_at")
    fields = ("project", "title", "body", "status", "assigned_agent", "id", "created_at", "updated_at")
    workspace_path = "project__workspace"

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
    revoked (deleted, alone or in bulk). Tokens belong to users, not workspaces: superusers see everyone's, other
    staff only their own.
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

    def get_queryset(self, request):
        tokens = super().get_queryset(request)
        return tokens if request.user.is_superuser else tokens.filter(user=request.user)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
