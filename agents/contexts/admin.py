"""Admin for versioned shared contexts: a thin UI over ``agents.contexts.services``.

- Contexts: created through ``context_create``, deleted through ``context_delete``; the change page
  is read-only and lists the newest versions (read-only inline, newest first) with a diff link and
  a "Roll back to this version" button per version.
- The diff page shows the RFC 6902 patch between any two retained versions and both documents.
- The rollback button leads to a confirmation page; confirming calls ``context_rollback``.
- "Pin" / "Unpin" per version (``context_pin`` / ``context_unpin``): pinned versions outlive the retention limit.
- Versions: a read-only list and detail page for the whole retained history.

Staff who are not superusers see the contexts of their workspaces (``WorkspaceScopedAdminMixin``).
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from projects.admin import WorkspaceScopedAdminMixin
from syndarix.admin_site import ReadOnlyAdminMixin, ServiceSaveAdminMixin
from syndarix.exceptions import DomainError

from ..exceptions import AlreadyCurrentVersion
from ..models import AgentContext, AgentContextVersion
from . import services as contexts

#: Newest versions shown on a context's change page; the version list holds the rest.
INLINE_VERSIONS = 50


def pretty_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True)


def author_label(version: AgentContextVersion) -> str:
    if version.created_by_user_id:
        return f"user {version.created_by_user.get_username()}"
    if version.created_by_agent_id:
        return f"agent {version.created_by_agent.name}"
    return "system"


def _context_url(context_id, name: str, *args) -> str:
    return reverse(f"admin:agents_agentcontext_{name}", args=[context_id, *args])


def _version_actions(version: AgentContextVersion, current_version: int, *, can_change: bool = False) -> str:
    """The links of one version: diffs, and when ``can_change`` "Roll back to this version" and the Pin / Unpin button
    (a small POST form)."""
    links: list[str] = []
    if version.version > 1:
        diff = _context_url(version.context_id, "diff") + f"?from={version.version - 1}&to={version.version}"
        links.append(format_html('<a href="{}">Diff with previous</a>', diff))
    if version.version != current_version:
        diff = _context_url(version.context_id, "diff") + f"?from={version.version}&to={current_version}"
        links.append(format_html('<a href="{}">Diff with current</a>', diff))
        if can_change:
            rollback = _context_url(version.context_id, "rollback", version.version)
            links.append(format_html('<a class="button" href="{}">Roll back to this version</a>', rollback))
    else:
        links.append(format_html("<strong>{}</strong>", "current version"))
    if can_change:
        verb = "unpin" if version.pinned else "pin"
        links.append(format_html(
            '<button type="submit" form="context-pin-form" formaction="{}" class="button context-pin">{}</button>',
            _context_url(version.context_id, verb, version.version), verb.capitalize(),
        ))
    return format_html('<span class="context-actions">{}</span>', format_html(" ".join(["{}"] * len(links)), *links))


def _patch_rows(patch: list[dict[str, Any]]) -> list[dict[str, str]]:
    """JSON Patch operations as table rows: ``op``, ``path``, ``shown`` (the pretty value or source path)."""
    return [
        {"op": op["op"], "path": op["path"], "shown": pretty_json(op["value"]) if "value" in op else op.get("from", "")}
        for op in patch
    ]


class AgentContextVersionInline(ReadOnlyAdminMixin, admin.TabularInline):
    """The newest versions of a context, read-only, newest first."""

    model = AgentContextVersion
    verbose_name = "version"
    verbose_name_plural = f"versions (newest {INLINE_VERSIONS})"
    fields = ("version_link", "created_at", "author", "change_description", "restored_from", "pinned",
              "data_preview", "version_actions")
    readonly_fields = fields
    ordering = ("-version",)
    extra = 0
    #: Set per request by ``AgentContextAdmin.get_inline_instances``: show the Pin / Unpin buttons.
    can_change_context = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("created_by_user", "created_by_agent", "context")

    @admin.display(description="version")
    def version_link(self, obj: AgentContextVersion) -> str:
        url = reverse("admin:agents_agentcontextversion_change", args=[obj.pk])
        return format_html('<a href="{}">v{}</a>', url, obj.version)

    @admin.display(description="by")
    def author(self, obj: AgentContextVersion) -> str:
        return author_label(obj)

    @admin.display(description="data")
    def data_preview(self, obj: AgentContextVersion) -> str:
        compact = json.dumps(obj.data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        return format_html("<code>{}</code>", Truncator(compact).chars(60))

    @admin.display(description="")
    def version_actions(self, obj: AgentContextVersion) -> str:
        return _version_actions(obj, obj.context.current_version, can_change=self.can_change_context)


class ScopeFilter(admin.SimpleListFilter):
    """Shared by every agent of the project, or owned by one agent."""

    title = "scope"
    parameter_name = "scope"

    def lookups(self, request, model_admin):
        return [("shared", "Shared by the project's agents"), ("agent", "Owned by one agent")]

    def queryset(self, request, queryset):
        if self.value() in ("shared", "agent"):
            return queryset.filter(instance__isnull=self.value() == "shared")
        return queryset


class AgentContextAddForm(forms.ModelForm):
    """Add form: project, optional owning agent, name, and the data of version 1."""

    data = forms.JSONField(initial=dict, required=False, help_text="A JSON object; becomes version 1.",
                           widget=forms.Textarea(attrs={"rows": 8, "cols": 80}))
    change_description = forms.CharField(required=False, max_length=2000)

    class Meta:
        model = AgentContext
        fields = ["project", "instance", "name"]

    def clean_data(self) -> dict:
        data = {} if self.cleaned_data.get("data") in (None, "") else self.cleaned_data["data"]
        try:
            contexts.validate_context_data(data)
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from exc
        return data


@admin.register(AgentContext)
class AgentContextAdmin(WorkspaceScopedAdminMixin, ServiceSaveAdminMixin, admin.ModelAdmin):
    list_display = ("name", "project", "workspace", "owner_agent", "current_version", "versions_count", "updated_at")
    list_filter = ("project__workspace", ScopeFilter, "updated_at")
    search_fields = ("name", "project__name", "project__workspace__name", "instance__name")
    list_select_related = ("project", "project__workspace", "instance")
    raw_id_fields = ("instance",)
    inlines = [AgentContextVersionInline]
    ordering = ("project__name", "name")
    workspace_path = "project__workspace"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(versions_count=Count("versions"))

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = AgentContextAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["project", "instance", "name", "data", "change_description"]
        return ["project", "instance", "name", "current_version", "versions_summary", "created_at", "updated_at",
                "current_data"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.get_fields(request, obj)

    def get_inline_instances(self, request, obj=None):
        if obj is None:
            return []
        inlines = super().get_inline_instances(request, obj)
        for inline in inlines:  # the Pin / Unpin buttons show to staff who may change this context
            inline.can_change_context = self.has_change_permission(request, obj)
        return inlines

    def get_formset_kwargs(self, request, obj, inline, prefix):
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, AgentContextVersionInline):
            kwargs["queryset"] = kwargs["queryset"].filter(version__gt=obj.current_version - INLINE_VERSIONS)
        return kwargs

    @admin.display(description="workspace", ordering="project__workspace__name")
    def workspace(self, obj: AgentContext) -> str:
        return str(obj.project.workspace)

    @admin.display(description="agent", ordering="instance__name", empty_value="shared")
    def owner_agent(self, obj: AgentContext):
        return obj.instance

    @admin.display(description="versions kept", ordering="versions_count")
    def versions_count(self, obj: AgentContext) -> int:
        return obj.versions_count

    @admin.display(description="history")
    def versions_summary(self, obj: AgentContext) -> str:
        url = reverse("admin:agents_agentcontextversion_changelist") + f"?context__id__exact={obj.pk}"
        diff = _context_url(obj.pk, "diff")
        return format_html(
            '{} versions kept (limit {}, plus pinned) · <a href="{}">all versions</a> · <a href="{}">compare</a>',
            obj.versions_count, contexts.history_limit(), url, diff,
        )

    @admin.display(description="current data")
    def current_data(self, obj: AgentContext) -> str:
        return format_html('<pre class="context-json">{}</pre>', pretty_json(contexts.context_read(obj).data))

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = extra_context or {}
        if object_id:  # read-only page: versions change only through writes, rollbacks and pins
            extra_context.update(show_save=False, show_save_and_continue=False, show_save_and_add_another=False)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj: AgentContext, form, change: bool) -> None:
        if change:
            return
        created = contexts.context_create(
            project=obj.project, instance=obj.instance, name=obj.name, data=form.cleaned_data["data"],
            actor=request.user, change_description=form.cleaned_data.get("change_description", ""),
        )
        self.adopt(obj, created)

    def delete_model(self, request, obj: AgentContext) -> None:
        contexts.context_delete(obj, actor=request.user)

    def delete_queryset(self, request, queryset) -> None:
        for context in queryset:
            contexts.context_delete(context, actor=request.user)

    def get_deleted_objects(self, objs, request):
        """Summarize instead of listing every version; versions go with their context."""
        objs = list(objs)
        rows = AgentContext.objects.filter(pk__in=[o.pk for o in objs]).annotate(n=Count("versions"))
        counts = dict(rows.values_list("pk", "n"))
        listing = [f"{o} ({counts.get(o.pk, 0)} versions)" for o in objs]
        model_count = {
            AgentContext._meta.verbose_name_plural: len(objs),
            AgentContextVersion._meta.verbose_name_plural: sum(counts.values()),
        }
        perms_needed = set() if self.has_delete_permission(request) else {AgentContext._meta.verbose_name}
        return listing, model_count, perms_needed, []

    # --- diff and rollback pages ---

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<uuid:object_id>/diff/", view(self.diff_view), name="agents_agentcontext_diff"),
            path("<uuid:object_id>/rollback/<int:version>/", view(self.rollback_view),
                 name="agents_agentcontext_rollback"),
            path("<uuid:object_id>/pin/<int:version>/", view(self.pin_view), {"pinned": True},
                 name="agents_agentcontext_pin"),
            path("<uuid:object_id>/unpin/<int:version>/", view(self.pin_view), {"pinned": False},
                 name="agents_agentcontext_unpin"),
            *super().get_urls(),
        ]

    def _page_context(self, request: HttpRequest, context: AgentContext, title: str) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": context,
            "context_obj": context,
            "title": title,
            "change_url": _context_url(context.pk, "change"),
        }

    def _get_context(self, request: HttpRequest, object_id, *, change: bool):
        """``(context, None)``, or ``(None, redirect)`` when it does not exist for the user (another tenant's
        included, as on the change page); 403 without the view (``change``: change) permission for it."""
        context = self.get_object(request, str(object_id))
        if context is None:
            return None, self._get_obj_does_not_exist_redirect(request, self.opts, str(object_id))
        allowed = self.has_change_permission(request, context) if change else \
            self.has_view_or_change_permission(request, context)
        if not allowed:
            raise PermissionDenied
        return context, None

    def diff_view(self, request: HttpRequest, object_id) -> HttpResponse:
        context, response = self._get_context(request, object_id, change=False)
        if response:
            return response
        current = context.current_version
        problems: list[str] = []

        def number(name: str, default: int) -> int:
            """``?<name>=`` as a version number; anything else is reported and replaced by ``default``."""
            raw = request.GET.get(name, "").strip()
            if not raw:
                return default
            value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 10 else 0
            if not 1 <= value <= contexts.MAX_VERSION:
                problems.append(f"“{Truncator(raw).chars(20)}” is not a version number; {name} v{default} is shown.")
                return default
            return value

        first, second = number("from", max(1, current - 1)), number("to", current)
        page = self._page_context(request, context, f"Compare versions of {context}")
        page.update(first=first, second=second, current_version=current, problems=problems,
                    can_change=self.has_change_permission(request, context))
        try:
            page["patch"] = contexts.context_diff(context, first, second)
            page["sides"] = [
                {"version": version, "json": pretty_json(version.data), "author": author_label(version)}
                for version in (contexts.context_read(context, n) for n in (first, second))
            ]
            page["rows"] = _patch_rows(page["patch"])
        except DomainError as exc:
            page["error"] = exc.message
        return TemplateResponse(request, "admin/agents/agentcontext/diff.html", page)

    def pin_view(self, request: HttpRequest, object_id, version: int, pinned: bool) -> HttpResponse:
        """POST: ``context_pin`` / ``context_unpin`` of one version, then back to the context's page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        context, response = self._get_context(request, object_id, change=True)
        if response:
            return response
        service, done = (contexts.context_pin, "pinned") if pinned else (contexts.context_unpin, "unpinned")
        try:
            service(context, version, actor=request.user)
        except DomainError as exc:
            self.message_user(request, f"Version {version} of “{context}” not {done}: {exc.message}", messages.ERROR)
        else:
            self.log_change(request, context, f"Version {version} {done}.")
            self.message_user(request, f"Version {version} of “{context}” {done}.", messages.SUCCESS)
        return HttpResponseRedirect(_context_url(context.pk, "change"))

    def rollback_view(self, request: HttpRequest, object_id, version: int) -> HttpResponse:
        context, response = self._get_context(request, object_id, change=True)
        if response:
            return response
        change_url = _context_url(context.pk, "change")
        if request.method == "POST":
            try:
                created = contexts.context_rollback(
                    context, version, actor=request.user,
                    change_description=request.POST.get("change_description", "").strip() or None,
                )
            except DomainError as exc:
                self.message_user(request, f"Not rolled back: {exc.message}", messages.ERROR)
            else:
                self.log_change(request, context, f"Rolled back to version {version} (new version {created.version}).")
                self.message_user(
                    request, f"Rolled back “{context}” to version {version}: it is now version {created.version}.",
                    messages.SUCCESS,
                )
            return HttpResponseRedirect(change_url)
        page = self._page_context(request, context, f"Roll back “{context}” to version {version}?")
        try:
            if version == context.current_version:
                raise AlreadyCurrentVersion(version)
            target = contexts.context_read(context, version)
            page.update(
                target=target, target_author=author_label(target), target_json=pretty_json(target.data),
                patch=contexts.context_diff(context, context.current_version, version),
                current_version=context.current_version, next_version=context.current_version + 1,
                equal_text=f"The data does not change: version {version} holds the same data as the current version.",
            )
            page["rows"] = _patch_rows(page["patch"])
        except DomainError as exc:
            self.message_user(request, f"Cannot roll back: {exc.message}", messages.ERROR)
            return HttpResponseRedirect(change_url)
        return TemplateResponse(request, "admin/agents/agentcontext/rollback_confirmation.html", page)


@admin.register(AgentContextVersion)
class AgentContextVersionAdmin(WorkspaceScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """The retained history of every context (read-only)."""

    list_display = ("context", "version", "created_at", "author", "restored_from", "pinned", "short_description")
    list_filter = ("pinned", "context__project__workspace", "created_at")
    search_fields = ("context__name", "context__project__name", "change_description")
    list_select_related = ("context", "context__instance", "created_by_user", "created_by_agent")
    ordering = ("context__name", "-version")
    fields = ("context", "version", "created_at", "author", "change_description", "restored_from", "pinned",
              "version_actions", "pretty_data")
    readonly_fields = fields
    workspace_path = "context__project__workspace"

    @admin.display(description="by")
    def author(self, obj: AgentContextVersion) -> str:
        return author_label(obj)

    @admin.display(description="change description")
    def short_description(self, obj: AgentContextVersion) -> str:
        return Truncator(obj.change_description).chars(80)

    @admin.display(description="actions")
    def version_actions(self, obj: AgentContextVersion) -> str:
        """The version's diff links (the page shows ``get_fields``' variant, with the rollback when allowed)."""
        return _version_actions(obj, obj.context.current_version)

    def get_fields(self, request, obj=None):
        """``version_actions`` offers the rollback to staff who may change the version's context."""
        if "_version_actions_field" not in request.__dict__:
            contexts_admin = self.admin_site.get_model_admin(AgentContext)
            can_change = obj is not None and contexts_admin.has_change_permission(request, obj.context)

            @admin.display(description="actions")
            def version_actions(version: AgentContextVersion) -> str:
                return _version_actions(version, version.context.current_version, can_change=can_change)

            request._version_actions_field = version_actions
        return [request._version_actions_field if name == "version_actions" else name for name in self.fields]

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    @admin.display(description="data")
    def pretty_data(self, obj: AgentContextVersion) -> str:
        return format_html('<pre class="context-json">{}</pre>', pretty_json(obj.data))
