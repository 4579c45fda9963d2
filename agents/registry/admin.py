"""Admin support for agent types backed by registered agent classes.

``AgentTypeRegistryAdminMixin`` goes first in an ``AgentType`` admin's bases::

    @admin.register(AgentType)
    class AgentTypeAdmin(AgentTypeRegistryAdminMixin, admin.ModelAdmin):
        ...

It adds the "handler" and "class registered" columns, a "class registered" filter, the
"Sync from registry" action, and a "Sync from registry" page (``<changelist>/sync-registry/``,
linked from the change list's object tools) that previews the sync as a dry run before running it,
which also works while there are no agent types to select yet. Both call
``agents.services.agent_types_sync``.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from ..services import agent_types_sync
from .base import AgentRegistry
from .base import registry as default_registry


class ClassRegisteredFilter(admin.SimpleListFilter):
    """Agent types whose handler class is registered, is missing, or that have no handler."""

    title = _("class registered")
    parameter_name = "class_registered"

    def lookups(self, request, model_admin):
        return [("yes", _("Yes")), ("no", _("No (missing class)")), ("none", _("No handler"))]

    def queryset(self, request, queryset):
        slugs = self.registry.slugs()
        if self.value() == "yes":
            return queryset.filter(handler__in=slugs)
        if self.value() == "no":
            return queryset.exclude(handler="").exclude(handler__in=slugs)
        if self.value() == "none":
            return queryset.filter(handler="")
        return queryset

    def __init__(self, request, params, model, model_admin):
        self.registry = model_admin.get_agent_registry()
        super().__init__(request, params, model, model_admin)


class AgentTypeRegistryAdminMixin:
    """Registry columns, filter, action and sync page for a ``ModelAdmin`` of ``AgentType``.

    ``agent_registry`` is the registry consulted (``None``: the application's registry).
    """

    agent_registry: AgentRegistry | None = None
    sync_registry_template = "admin/agents/agenttype/sync_registry.html"

    def get_agent_registry(self) -> AgentRegistry:
        return default_registry if self.agent_registry is None else self.agent_registry

    # --- Columns and filter. ---

    @admin.display(description=_("handler"), ordering="handler")
    def handler_display(self, obj) -> str:
        return obj.handler or self.get_empty_value_display()

    @admin.display(description=_("class registered"), boolean=True)
    def class_registered(self, obj) -> bool | None:
        """``True``/``False`` for a handler whose class is / is not registered; ``None`` without a handler."""
        return obj.handler in self.get_agent_registry() if obj.handler else None

    def get_list_display(self, request):
        columns = list(super().get_list_display(request))
        if "handler" in columns:
            columns[columns.index("handler")] = "handler_display"
        return [*columns, *(c for c in ("handler_display", "class_registered") if c not in columns)]

    def get_list_filter(self, request):
        filters = list(super().get_list_filter(request))
        return filters if ClassRegisteredFilter in filters else [*filters, ClassRegisteredFilter]

    # --- The action. ---

    def has_sync_permission(self, request) -> bool:
        """Syncing creates and changes agent types: it needs both permissions."""
        return self.has_add_permission(request) and self.has_change_permission(request)

    def get_actions(self, request):
        actions = super().get_actions(request)
        if self.actions is not None and self.has_sync_permission(request):
            actions["sync_from_registry"] = (
                type(self).sync_from_registry,
                "sync_from_registry",
                _("Sync from registry"),
            )
        return actions

    def sync_from_registry(self, request, queryset) -> None:
        """Create or update the agent types of every registered class (the selection does not matter)."""
        report = agent_types_sync(self.get_agent_registry())
        self.message_user(request, f"Synced agent types from the registry: {report.summary()}.", messages.SUCCESS)

    # --- The sync page. ---

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}_sync_registry"
        urls = [path("sync-registry/", self.admin_site.admin_view(self.sync_registry_view), name=name)]
        return urls + super().get_urls()

    def sync_registry_view(self, request):
        """GET: what a sync would do (a dry run). POST: run it and return to the change list."""
        if not self.has_sync_permission(request):
            raise PermissionDenied
        agent_registry = self.get_agent_registry()
        if request.method == "POST":
            deactivate = request.POST.get("deactivate_missing") == "on"
            report = agent_types_sync(agent_registry, deactivate_missing=deactivate)
            self.message_user(request, f"Synced agent types from the registry: {report.summary()}.", messages.SUCCESS)
            changelist = f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"
            return HttpResponseRedirect(reverse(changelist, current_app=self.admin_site.name))
        preview = agent_types_sync(agent_registry, dry_run=True, deactivate_missing=True)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Sync agent types from the registry"),
            "opts": self.opts,
            "preview": preview,
            "definitions": agent_registry.definitions(),
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, self.sync_registry_template, context)
