"""Django admin for agents: a thin UI over ``agents.services``.

Staff spawn agents on a "Spawn agent" page (``agent_spawn``), move them with one button per
transition available now (the model's django-fsm transitions, each performed by its service:
``agent_pause``, ``agent_resume``, ``agent_terminate`` after a confirmation page, and
``agent_transition`` for start work / wait / finish), apply pause / resume / terminate to a
selection, and edit the fields ``agent_update`` allows (budgets included). ``status`` and the usage
counters are read-only; service errors become admin messages. The transition ledger is read-only.

An agent's page lists its latest runs and has a "Run…" page that queues a run
(``agents.runtime.services.run_create``); the runs admin itself is ``agents.runtime.admin``. The admin
index shows the agents by project (``project_summary_section``) and the usage charts (``usage_section``), as does a
project's page (``project_usage_section``).
"""

from __future__ import annotations

import json
import uuid
from typing import NamedTuple

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.timesince import timesince
from django.utils.translation import ngettext

from projects.admin import WorkspaceScopedAdminMixin, workspace_scope
from projects.choices import WRITE_ROLES
from projects.models import Project
from projects.selectors import member_workspace_ids
from syndarix.admin_site import LatestRowsFormSet, ReadOnlyAdminMixin, ServiceSaveAdminMixin, precise_time
from syndarix.exceptions import DomainError

from . import charts, selectors, services
from .choices import LIVE_STATUSES, AgentStatus, TerminationReason
from .exceptions import SERVICE_ERRORS, describe_error
from .forms import AgentInstanceForm, AgentSpawnForm, AgentTerminateForm, config_error_messages
from .models import AgentInstance, AgentTransition, AgentType
from .registry.admin import AgentTypeRegistryAdminMixin
from .runtime import services as runtime_services
from .runtime.admin import OFFLINE_NOTE, AgentRunInline, offline_provider, short_id
from .runtime.forms import RunCreateForm

#: Rows of the ledger shown on an agent's change form; the ledger page lists all of them.
LEDGER_INLINE_LIMIT = 50


class LifecycleAction(NamedTuple):
    """One transition of the model's lifecycle, as the admin offers it."""

    name: str  # the AgentInstance transition method
    label: str  # button text
    done: str  # what happened, for messages ("paused")
    target: str
    sources: frozenset[str]

    @property
    def target_label(self) -> str:
        """The target status in words ("working"), for "Could not move … to working"."""
        return AgentStatus(self.target).label.lower()


_ACTION_TEXT = {  # button order on the change form
    "start_work": ("Start work", "is now working"),
    "wait": ("Wait", "is now waiting"),
    "finish": ("Finish", "finished and is idle"),
    "pause": ("Pause", "paused"),
    "resume": ("Resume", "resumed"),
    "terminate": ("Terminate", "terminated"),
}


def _lifecycle_actions() -> dict[str, LifecycleAction]:
    """Read the transitions declared on ``AgentInstance`` (the single source of the table)."""
    sources: dict[str, set[str]] = {}
    targets: dict[str, str] = {}
    for transition in AgentInstance._meta.get_field("status").get_all_transitions(AgentInstance):
        sources.setdefault(transition.name, set()).add(transition.source)
        targets[transition.name] = transition.target
    missing = set(targets) - set(_ACTION_TEXT)
    if missing:
        raise RuntimeError(f"Admin labels missing for transitions: {sorted(missing)}")
    return {
        name: LifecycleAction(name, label, done, targets[name], frozenset(sources[name]))
        for name, (label, done) in _ACTION_TEXT.items()
    }


LIFECYCLE_ACTIONS = _lifecycle_actions()

#: The change form's lifecycle buttons submit the form itself with this field: a transition name, or ``RUN_BUTTON``
#: for "Run…". The edits on the page are saved first, so a button never discards them.
LIFECYCLE_FIELD = "_lifecycle"
RUN_BUTTON = "run"


def perform_transition(
    agent: AgentInstance,
    action: LifecycleAction,
    *,
    actor,
    reason: str = "",
    termination_reason: str = TerminationReason.USER,
) -> AgentInstance:
    """Run ``action`` on ``agent`` through its service; returns the fresh agent.

    Pause, resume and terminate have their own services; the other edges go through
    ``agent_transition`` restricted to the action's sources (so a stale "Finish" click cannot
    resume a paused agent). Raises whatever the service raises.
    """
    if action.name == "pause":
        return services.agent_pause(agent, actor=actor, reason=reason)
    if action.name == "resume":
        return services.agent_resume(agent, actor=actor, reason=reason)
    if action.name == "terminate":
        return services.agent_terminate(agent, actor=actor, reason=reason, termination_reason=termination_reason)
    return services.agent_transition(agent, action.target, actor=actor, reason=reason, only_from=action.sources)


def _uuid_or_none(value: str | None) -> str | None:
    """``value`` when it is a UUID (the spawn page's ``?project=``), else ``None``: a stray value must not
    reach the project lookup."""
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None


def status_badge(status: str):
    return format_html(
        '<span class="agent-status agent-status-{}">{}</span>', status, AgentStatus(status).label
    )


class LatestTransitionsFormSet(LatestRowsFormSet):
    """The newest ``LEDGER_INLINE_LIMIT`` ledger rows only: an agent's ledger grows without bound."""

    limit = LEDGER_INLINE_LIMIT


class AgentTransitionInline(ReadOnlyAdminMixin, admin.TabularInline):
    """The agent's transition ledger, newest first, read-only."""

    model = AgentTransition
    fk_name = "agent"
    formset = LatestTransitionsFormSet
    fields = ("when", "from_status", "to_status", "actor", "reason", "request_id")
    readonly_fields = fields
    ordering = ("-created_at",)
    extra = 0
    verbose_name = "transition"
    verbose_name_plural = f"Transition ledger (latest {LEDGER_INLINE_LIMIT}, newest first)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")

    @admin.display(description="When")
    def when(self, obj: AgentTransition) -> str:
        return precise_time(obj.created_at)


@admin.register(AgentType)
class AgentTypeAdmin(ServiceSaveAdminMixin, AgentTypeRegistryAdminMixin, admin.ModelAdmin):
    list_display = ("name", "slug", "handler", "is_active", "live_agents", "total_agents")
    list_select_related = False  # no foreign keys to join; the counts are annotations
    list_filter = ("is_active",)
    search_fields = ("name", "slug", "description", "handler")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("id", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "slug", "description", "is_active", "handler")}),
        ("Capabilities and configuration", {"fields": ("capabilities", "config_schema")}),
        (
            "Budget",
            {
                "fields": ("max_tokens", "max_cost_usd"),
                "description": "Defaults for its agents; an agent over its budget is paused at its next step.",
            },
        ),
        ("Record", {"fields": ("id", "created_at", "updated_at")}),
    )

    def get_queryset(self, request):
        """Agent types are a global catalog; their agent counts cover only the workspaces the user sees."""
        if request.user.is_superuser:
            seen = Q()
        else:
            seen = Q(instances__project__workspace__in=member_workspace_ids(request.user))
        return super().get_queryset(request).annotate(
            total_agent_count=Count("instances", filter=seen),
            live_agent_count=Count("instances", filter=seen & Q(instances__status__in=LIVE_STATUSES)),
        )

    def save_model(self, request, obj: AgentType, form, change: bool) -> None:
        """Through ``agent_type_create`` / ``agent_type_update`` (a slug taken meanwhile is a form error)."""
        if change:
            services.agent_type_update(obj, data={name: form.cleaned_data[name] for name in form.changed_data
                                                  if name in services.AGENT_TYPE_FIELDS})
        else:
            self.adopt(obj, services.agent_type_create(
                **{name: getattr(obj, name) for name in services.AGENT_TYPE_FIELDS}
            ))

    @admin.display(description="Live agents", ordering="live_agent_count")
    def live_agents(self, obj: AgentType) -> int:
        return obj.live_agent_count

    @admin.display(description="All agents", ordering="total_agent_count")
    def total_agents(self, obj: AgentType):
        url = reverse("admin:agents_agentinstance_changelist") + f"?agent_type__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.total_agent_count)


@admin.register(AgentInstance)
class AgentInstanceAdmin(WorkspaceScopedAdminMixin, admin.ModelAdmin):
    form = AgentInstanceForm
    list_display = (
        "name_display", "status_display", "project", "agent_type", "tokens_display", "cost_display", "last_activity",
    )
    list_select_related = ("project__workspace", "agent_type")
    list_filter = ("status", "agent_type", "project__workspace", "project", "is_playground", "termination_reason")
    search_fields = ("name", "current_task", "session_id", "project__name", "agent_type__name")
    date_hierarchy = "created_at"
    actions = ("pause_selected", "resume_selected", "terminate_selected")
    inlines = (AgentRunInline, AgentTransitionInline)
    editable_fields = AgentInstanceForm._meta.fields
    ordering = ("-created_at",)  # stated: the issue count's GROUP BY drops the model's default order
    workspace_path = "project__workspace"
    readonly_fields = (
        "status_display", "project", "agent_type", "agent_type_schema", "tasks_completed", "tokens_display",
        "cost_display", "assigned_issues", "last_activity_at", "last_heartbeat_at", "last_error", "terminated_at",
        "termination_reason", "is_playground", "id", "created_at", "updated_at", "agent_type_revision",
        "effective_template_display", "budget_display",
    )
    fieldsets = (
        (None, {"fields": ("name", "status_display", "project", "agent_type", "current_task")}),
        ("Configuration", {"fields": ("config", "agent_type_schema")}),
        ("Template", {"fields": ("agent_type_revision", "effective_template_display")}),
        ("Memory and session", {"fields": ("short_term_memory", "long_term_memory_ref", "session_id")}),
        ("Usage", {"fields": ("tasks_completed", "tokens_display", "cost_display", "assigned_issues")}),
        ("Budget", {"fields": ("max_tokens", "max_cost_usd", "budget_display")}),
        (
            "Activity",
            {
                "fields": (
                    "last_activity_at", "last_heartbeat_at", "last_error", "terminated_at", "termination_reason",
                    "is_playground", "id", "created_at", "updated_at",
                )
            },
        ),
    )

    class Media:
        css = {"all": ("agents/admin.css",)}
        js = ("agents/unsaved_changes.js",)  # asks before a link or Back discards edits on the change form

    # --- Queryset and permissions. ---

    def get_queryset(self, request):
        queryset = self.scope(request, selectors.agent_queryset())
        ordering = self.get_ordering(request)
        return queryset.order_by(*ordering) if ordering else queryset

    def has_change_permission(self, request, obj=None) -> bool:
        """A terminated agent is view-only: nothing about it can change any more."""
        if obj is not None and obj.status == AgentStatus.TERMINATED:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        """Agents are terminated, never deleted: their ledger is the audit trail."""
        return False

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.status == AgentStatus.TERMINATED:
            return (*self.editable_fields, *self.readonly_fields)
        return self.readonly_fields

    # --- Columns and read-only fields. ---

    @admin.display(description="Name", ordering="name")
    def name_display(self, obj: AgentInstance) -> str:
        """The name with the id's first 8 hex digits (``str``): agents of a project may share a name."""
        return str(obj)

    @admin.display(description="Status", ordering="status")
    def status_display(self, obj: AgentInstance):
        return status_badge(obj.status)

    @admin.display(description="Last activity", ordering="last_activity_at")
    def last_activity(self, obj: AgentInstance):
        if not obj.last_activity_at:
            return "-"
        when = obj.last_activity_at
        ago = timesince(when, depth=1)
        text = "just now" if ago.startswith("0\xa0") else f"{ago} ago"  # timesince says "0 minutes" under a minute
        return format_html('<span title="{}">{}</span>', precise_time(when), text)

    @admin.display(description="Tokens", ordering="tokens_used")
    def tokens_display(self, obj: AgentInstance) -> str:
        return f"{obj.tokens_used:,}"

    @admin.display(description="Cost (USD)", ordering="cost_incurred")
    def cost_display(self, obj: AgentInstance) -> str:
        return f"{obj.cost_incurred:,.4f}"

    @admin.display(description="Assigned issues", ordering="assigned_issues_count")
    def assigned_issues(self, obj: AgentInstance):
        count = getattr(obj, "assigned_issues_count", None)
        if count is None:
            count = obj.assigned_issues.count()
        url = reverse("admin:projects_issue_changelist") + f"?assigned_agent__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, count)

    @admin.display(description="Budget in force")
    def budget_display(self, obj: AgentInstance) -> str:
        """The budget the runtime applies (the agent's own values, else its type's), and whether it is spent."""
        max_tokens, max_cost = obj.budget
        parts = [
            f"{max_tokens:,} tokens" if max_tokens is not None else "no token limit",
            f"{max_cost} USD" if max_cost is not None else "no cost limit",
        ]
        inherited = obj.max_tokens is None and obj.max_cost_usd is None and (max_tokens, max_cost) != (None, None)
        text = ", ".join(parts) + (" (the agent type's defaults)" if inherited else "")
        exceeded = obj.budget_exceeded()
        return f"{text}. Exceeded: {exceeded}." if exceeded else f"{text}."

    @admin.display(description="Effective template")
    def effective_template_display(self, obj: AgentInstance):
        """The ``parameters.agent`` document the agent was spawned with (read-only)."""
        if obj.effective_template is None:
            return self.get_empty_value_display()
        return format_html(
            '<details class="agent-schema"><summary>parameters.agent</summary><pre class="agent-schema">{}</pre>'
            "</details>",
            json.dumps(obj.effective_template, indent=2),
        )

    @admin.display(description="Config schema")
    def agent_type_schema(self, obj: AgentInstance):
        return format_html(
            '<details class="agent-schema"><summary>{} schema</summary><pre class="agent-schema">{}</pre></details>',
            obj.agent_type.name, json.dumps(obj.agent_type.config_schema, indent=2),
        )

    # --- Saving edits through agent_update. ---

    def save_model(self, request, obj, form, change) -> None:
        """Write the changed editable fields with ``agent_update`` (agents are created by spawning)."""
        if not change:
            raise PermissionDenied("Agents are created on the Spawn agent page.")
        data = {name: form.cleaned_data[name] for name in form.changed_data if name in self.editable_fields}
        if data:
            services.agent_update(obj, actor=request.user, data=data)
        request._agent_edits = [str(form.fields[name].label or name).lower() for name in data]

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except SERVICE_ERRORS as exc:  # raised by agent_update: the agent changed meanwhile
            self.message_user(request, describe_error(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def add_view(self, request, form_url="", extra_context=None):
        """Agents are born through ``agent_spawn``: "Add" leads to the Spawn agent page."""
        url = reverse("admin:agents_agentinstance_spawn")
        query = request.GET.copy()
        query.pop("_changelist_filters", None)
        return HttpResponseRedirect(f"{url}?{query.urlencode()}" if query else url)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and change:
            if request.method == "POST" and request.POST.get(LIFECYCLE_FIELD):  # the form was invalid
                self.message_user(
                    request, f"Nothing was done to “{obj}”: correct the errors below, then press the button "
                    "again (your edits are kept on the page).", messages.ERROR,
                )
            context["lifecycle"] = self.lifecycle_context(request, obj)
            context["ledger_url"] = reverse("admin:agents_agenttransition_changelist") + f"?agent={obj.pk}"
            if request.user.has_perm("agents.view_agentrun"):
                context["runs_url"] = reverse("admin:agents_agentrun_changelist") + f"?agent__id__exact={obj.pk}"
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def lifecycle_context(self, request, obj: AgentInstance) -> dict:
        """Status and the transitions available now (buttons), for the change form template.

        With ``form_id`` the buttons submit the change form itself (``LIFECYCLE_FIELD``), so edits on the page are
        saved with the transition (``response_change``); without it (a user who can only view), "Run…" is a link.
        """
        available = {t.name for t in obj.get_available_status_transitions()}
        can_act = self.has_change_permission(request, obj)
        can_run = (obj.status != AgentStatus.TERMINATED and request.user.has_perm("agents.add_agentrun")
                   and self.can_write(request, obj))
        return {
            "field": LIFECYCLE_FIELD,
            "form_id": f"{self.opts.model_name}_form" if can_act else "",
            "run_url": reverse("admin:agents_agentinstance_run", args=[obj.pk]) if can_run else "",
            "status": obj.status,
            "badge": status_badge(obj.status),
            "actions": [a for name, a in LIFECYCLE_ACTIONS.items() if name in available] if can_act else [],
        }

    def response_change(self, request, obj):
        """After the change form is saved: a lifecycle button (``LIFECYCLE_FIELD``) goes on to its transition (or the
        terminate confirmation, or the Run page) with the edits already saved; the Save buttons as usual."""
        name = request.POST.get(LIFECYCLE_FIELD)
        if not name:
            return super().response_change(request, obj)
        edits = getattr(request, "_agent_edits", [])
        if edits:
            self.message_user(request, f"Saved your changes to “{obj}” ({', '.join(edits)}).", messages.SUCCESS)
        if name == RUN_BUTTON:
            return redirect("admin:agents_agentinstance_run", obj.pk)
        action = LIFECYCLE_ACTIONS.get(name)
        if action is None:
            self.message_user(request, "Unknown transition.", messages.ERROR)
        elif action.name == "terminate":  # always through the confirmation page
            return redirect("admin:agents_agentinstance_terminate", obj.pk)
        else:
            self._transition_one(request, AgentInstance.objects.get(pk=obj.pk), action)
        return redirect(self._change_url(obj))

    def _transition_one(self, request, agent: AgentInstance, action: LifecycleAction) -> None:
        """Perform one button's transition on ``agent`` and report it (done, already there, or why not)."""
        before = agent.status
        try:
            agent = perform_transition(agent, action, actor=request.user)
        except SERVICE_ERRORS as exc:
            self.message_user(request, f"Could not move “{agent}” to {action.target_label}: "
                              f"{describe_error(exc)}", messages.ERROR)
            return
        if agent.status == before:
            self.message_user(request, f"Agent “{agent}” is already {AgentStatus(before).label.lower()}.",
                              messages.INFO)
        else:
            self.log_change(request, agent, f"{action.label}: {before} → {agent.status}")
            self.message_user(request, f"Agent “{agent}” {action.done}.", messages.SUCCESS)

    # --- Lifecycle views. ---

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        return [
            path("spawn/", wrap(self.spawn_view), name="{}_{}_spawn".format(*info)),
            path("<path:object_id>/transition/", wrap(self.transition_view), name="{}_{}_transition".format(*info)),
            path("<path:object_id>/terminate/", wrap(self.terminate_view), name="{}_{}_terminate".format(*info)),
            path("<path:object_id>/run/", wrap(self.run_view), name="{}_{}_run".format(*info)),
            *super().get_urls(),
        ]

    def _change_url(self, agent: AgentInstance) -> str:
        return reverse("admin:agents_agentinstance_change", args=[agent.pk])

    def _form_page_context(self, request, form, **extra) -> dict:
        """Context of an admin page around ``form`` (all its fields in one fieldset), plus ``extra``."""
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "adminform": helpers.AdminForm(form, [(None, {"fields": list(form.fields)})], {}),
            "errors": helpers.AdminErrorList(form, []),
            "media": self.media + form.media,
            **extra,
        }

    def _get_agent_or_redirect(self, request, object_id):
        """``(agent, None)`` for an agent the user may act on; ``(None, redirect)`` when it does not exist for them
        (another tenant's agent included); 403 without the change permission or a writing role in its workspace."""
        if not super().has_change_permission(request):
            raise PermissionDenied
        agent = self.get_object(request, unquote(object_id))
        if agent is None:
            return None, self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.can_write(request, agent):
            raise PermissionDenied
        return agent, None

    def transition_view(self, request, object_id):
        """POST ``transition=<name>``: perform one transition without the change form (for scripts and links;
        the change form's buttons submit the form itself, see ``response_change``), then back to the form."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        agent, response = self._get_agent_or_redirect(request, object_id)
        if response:
            return response
        action = LIFECYCLE_ACTIONS.get(request.POST.get("transition", ""))
        if action is None:
            self.message_user(request, "Unknown transition.", messages.ERROR)
        elif action.name == "terminate":  # always through the confirmation page
            return redirect("admin:agents_agentinstance_terminate", agent.pk)
        else:
            self._transition_one(request, agent, action)
        return redirect(self._change_url(agent))

    def terminate_view(self, request, object_id):
        """Confirmation page for terminating one agent: asks for a reason and a termination reason."""
        agent, response = self._get_agent_or_redirect(request, object_id)
        if response:
            return response
        if agent.status == AgentStatus.TERMINATED:
            self.message_user(request, f"Agent “{agent}” is already terminated.", messages.WARNING)
            return redirect(self._change_url(agent))
        form = AgentTerminateForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            try:
                agent = perform_transition(
                    agent, LIFECYCLE_ACTIONS["terminate"], actor=request.user, reason=form.cleaned_data["reason"],
                    termination_reason=form.cleaned_data["termination_reason"],
                )
            except SERVICE_ERRORS as exc:
                self.message_user(request, f"Could not terminate “{agent}”: {describe_error(exc)}", messages.ERROR)
            else:
                reason = form.cleaned_data["reason"]
                self.log_change(request, agent, f"Terminated ({agent.termination_reason}): {reason}")
                self.message_user(request, f"Agent “{agent}” has been terminated.", messages.SUCCESS)
            return redirect(self._change_url(agent))
        context = self._form_page_context(
            request, form, title=f"Terminate agent “{agent}”?", agent=agent, status_badge=status_badge(agent.status),
            change_url=self._change_url(agent),
        )
        return TemplateResponse(request, "admin/agents/agentinstance/terminate_confirmation.html", context)

    def run_view(self, request, object_id):
        """The "Run…" page: an instruction and/or an issue of the agent's project, then ``run_create`` with the
        staff user as the actor, and on to the new run's page. Refusals (not runnable, terminated, invalid
        input) are shown on the form."""
        agent = self.get_object(request, unquote(object_id))
        if agent is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not request.user.has_perm("agents.add_agentrun") or not self.can_write(request, agent):
            raise PermissionDenied
        form = RunCreateForm(request.POST if request.method == "POST" else None, agent=agent)
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            try:
                run, created = runtime_services.run_create(
                    agent=agent, instruction=data["instruction"], issue=data["issue"], actor=request.user,
                    request_id=data["request_id"],
                )
            except ValidationError as exc:
                form.add_error(None, describe_error(exc))
            except DomainError as exc:
                field = {"issue_id": "issue"}.get(exc.field or "", exc.field)
                form.add_error(field if field in ("instruction", "issue") else None, exc.message)
            else:
                if created:
                    self.log_change(request, agent, f"Run {short_id(run.pk)} queued")
                    self.message_user(
                        request, f"Run {short_id(run.pk)} of “{agent}” queued; it starts when the agent is idle.",
                        messages.SUCCESS,
                    )
                else:
                    self.message_user(request, f"Run {short_id(run.pk)} was already queued by this form.",
                                      messages.INFO)
                return redirect("admin:agents_agentrun_change", run.pk)
        context = self._form_page_context(
            request, form, title=f"Run agent “{agent}”", agent=agent, status_badge=status_badge(agent.status),
            change_url=self._change_url(agent), offline_note=OFFLINE_NOTE if offline_provider() else "",
        )
        return TemplateResponse(request, "admin/agents/agentinstance/run.html", context)

    def spawn_view(self, request):
        """The Spawn agent page: validates the form (config against the type's schema), then ``agent_spawn``."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        projects = workspace_scope(request.user, Project.objects.select_related("workspace"), "workspace",
                                   roles=WRITE_ROLES)
        if request.method == "POST":
            form = AgentSpawnForm(request.POST, admin_site=self.admin_site, projects=projects)
        else:
            form = AgentSpawnForm(initial={"project": _uuid_or_none(request.GET.get("project"))},
                                  admin_site=self.admin_site, projects=projects)
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            try:
                agent = services.agent_spawn(
                    project=data["project"], agent_type=data["agent_type"], name=data["name"],
                    config=data["config"], current_task=data["current_task"], actor=request.user,
                )
            except ValidationError as exc:
                form.add_error("config", config_error_messages(exc))
            except DomainError as exc:
                field = {"agent_type_id": "agent_type", "project_id": "project"}.get(exc.field or "", exc.field)
                form.add_error(field if field in form.fields else None, exc.message)
            else:
                self.log_addition(request, agent, "Spawned")
                self.message_user(
                    request, f"Agent “{agent}” spawned in {agent.project} (idle).", messages.SUCCESS
                )
                return redirect(self._change_url(agent))
        context = self._form_page_context(
            request, form, title="Spawn agent",
            agent_types=[
                (agent_type, json.dumps(agent_type.config_schema, indent=2))
                for agent_type in AgentType.objects.filter(is_active=True).order_by("name")
            ],
        )
        return TemplateResponse(request, "admin/agents/agentinstance/spawn.html", context)

    # --- Bulk actions. ---

    def _bulk_transition(self, request, queryset, name: str, **kwargs) -> None:
        """Apply one lifecycle action to every selected agent, each through its service.

        Reports "N agents paused", the agents already in the target status, and each failure by
        name. Agents are processed in primary-key order, so concurrent bulk actions lock alike.
        """
        action = LIFECYCLE_ACTIONS[name]
        changed, unchanged, failed = [], [], []
        for agent in queryset.order_by("pk"):
            if not self.can_write(request, agent):
                failed.append((agent, "your role in its workspace is read-only."))
                continue
            before = agent.status
            try:
                result = perform_transition(agent, action, actor=request.user, **kwargs)
            except SERVICE_ERRORS as exc:
                failed.append((agent, describe_error(exc)))
                continue
            if result.status == before:
                unchanged.append(agent)
            else:
                changed.append(agent)
                self.log_change(request, result, f"{action.label} (bulk action): {before} → {result.status}")
        if changed:
            text = ngettext("%(count)d agent %(done)s.", "%(count)d agents %(done)s.", len(changed))
            self.message_user(request, text % {"count": len(changed), "done": action.done}, messages.SUCCESS)
        if unchanged:
            status = AgentStatus(action.target).label.lower()
            text = ngettext("%(count)d agent was already %(status)s: %(names)s.",
                            "%(count)d agents were already %(status)s: %(names)s.", len(unchanged))
            names = ", ".join(f"“{a}”" for a in unchanged)
            self.message_user(request, text % {"count": len(unchanged), "status": status, "names": names},
                              messages.INFO)
        for agent, error in failed:
            self.message_user(request, f"Could not move “{agent}” to {action.target_label}: {error}",
                              messages.ERROR)

    @admin.action(description="Pause selected agents", permissions=["change"])
    def pause_selected(self, request, queryset):
        self._bulk_transition(request, queryset, "pause")

    @admin.action(description="Resume selected agents", permissions=["change"])
    def resume_selected(self, request, queryset):
        self._bulk_transition(request, queryset, "resume")

    @admin.action(description="Terminate selected agents…", permissions=["change"])
    def terminate_selected(self, request, queryset):
        """Ask for a reason on a confirmation page, then terminate each selected agent."""
        form = AgentTerminateForm(request.POST if request.POST.get("post") == "yes" else None)
        if form.is_bound and form.is_valid():
            self._bulk_transition(
                request, queryset, "terminate", reason=form.cleaned_data["reason"],
                termination_reason=form.cleaned_data["termination_reason"],
            )
            return None
        agents = list(queryset.order_by("name"))
        context = self._form_page_context(
            request, form,
            title=ngettext("Terminate %(count)d agent?", "Terminate %(count)d agents?", len(agents))
            % {"count": len(agents)},
            agents=[(agent, status_badge(agent.status)) for agent in agents],
            already_terminated=sum(a.status == AgentStatus.TERMINATED for a in agents),
            action_checkbox_name=helpers.ACTION_CHECKBOX_NAME,
        )
        return TemplateResponse(request, "admin/agents/agentinstance/terminate_selected_confirmation.html", context)


@admin.register(AgentTransition)
class AgentTransitionAdmin(WorkspaceScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """The append-only ledger: view only (``?agent=<id>`` lists one agent's transitions, and says whose)."""

    list_display = ("when", "agent_display", "project", "from_display", "to_display", "actor", "reason", "request_id")
    list_select_related = ("agent__project", "actor")
    list_filter = ("to_status", "from_status", "agent__project__workspace", "agent__project")
    search_fields = ("agent__name", "reason", "request_id", "actor__username")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    workspace_path = "agent__project__workspace"

    def changelist_view(self, request, extra_context=None):
        """With ``?agent=<id>``, the title names the agent and its project."""
        agent = None
        agent_id = _uuid_or_none(request.GET.get("agent"))
        if agent_id:
            agents = workspace_scope(request.user, AgentInstance.objects.select_related("project"),
                                     "project__workspace")
            agent = agents.filter(pk=agent_id).first()
        if agent is not None:
            extra_context = {
                "title": f"Transition ledger of agent “{agent}” in {agent.project.name}",
                "subtitle": None,
                **(extra_context or {}),
            }
        return super().changelist_view(request, extra_context=extra_context)

    @admin.display(description="When", ordering="created_at")
    def when(self, obj: AgentTransition) -> str:
        return precise_time(obj.created_at)

    @admin.display(description="Agent", ordering="agent__name")
    def agent_display(self, obj: AgentTransition):
        url = reverse("admin:agents_agentinstance_change", args=[obj.agent_id])
        return format_html('<a href="{}">{}</a>', url, obj.agent)

    @admin.display(description="From", ordering="from_status")
    def from_display(self, obj: AgentTransition) -> str:
        return obj.get_from_status_display() or "(spawned)"

    @admin.display(description="To", ordering="to_status")
    def to_display(self, obj: AgentTransition) -> str:
        return obj.get_to_status_display()

    @admin.display(description="Project", ordering="agent__project__name")
    def project(self, obj: AgentTransition) -> str:
        return obj.agent.project.name


# --- The admin index: agents by project -------------------------------------------------------------------

#: Most projects the index summary lists; the Projects page lists the rest.
INDEX_SUMMARY_LIMIT = 50

_SUMMARY_KEYS = (
    "idle_instances", "active_instances", "waiting_instances", "paused_instances", "terminated_instances",
    "total_instances", "total_tasks_completed", "total_tokens_used", "total_cost_incurred",
)


def project_summary_section(request) -> dict | None:
    """The index's "Agents by project" section for staff who may view agents (``None`` for the others), over the
    projects of the workspaces the user sees: ``project_summary`` (rows of ``selectors.project_agent_summary``, one
    grouped query), ``project_summary_truncated``, ``project_summary_totals`` and ``can_spawn`` (the "Spawn agent"
    link shows only to staff who may spawn)."""
    if not request.user.has_perm("agents.view_agentinstance"):
        return None
    projects = workspace_scope(request.user, Project.objects.all(), "workspace")
    rows = list(selectors.project_agent_summary(projects)[: INDEX_SUMMARY_LIMIT + 1])
    truncated = len(rows) > INDEX_SUMMARY_LIMIT
    rows = rows[:INDEX_SUMMARY_LIMIT]
    return {
        "can_spawn": admin.site.get_model_admin(AgentInstance).has_add_permission(request),
        "project_summary": rows,
        "project_summary_truncated": truncated,
        "project_summary_totals": {key: sum(getattr(row, key) for row in rows) for key in _SUMMARY_KEYS},
    }


admin.site.register_index_section(
    "agents.project_summary", template="admin/agents/index_project_summary.html", context=project_summary_section,
    order=20, css=("agents/admin.css",),
)


def usage_section(request) -> dict | None:
    """The index's usage charts (``agents.charts.fleet_charts``, three queries) over the projects of the workspaces the
    user sees, for staff who may view agents (``None`` for the others)."""
    if not request.user.has_perm("agents.view_agentinstance"):
        return None
    return {"usage": charts.fleet_charts(workspace_scope(request.user, Project.objects.all(), "workspace"))}


def project_usage_section(request, project: Project) -> dict | None:
    """A project page's usage charts (``agents.charts.project_charts``, one query), for staff who may view agents."""
    if not request.user.has_perm("agents.view_agentinstance"):
        return None
    return {"usage": charts.project_charts(project)}


admin.site.register_index_section(
    "agents.usage", template="admin/agents/index_usage.html", context=usage_section, order=25,
    css=("agents/admin.css",),
)
admin.site.register_object_section(
    Project, "agents.usage", template="admin/agents/_usage_charts.html", context=project_usage_section,
    css=("agents/admin.css",),
)


from .contexts import admin as contexts_admin  # noqa: E402, F401  (registers the shared-context admin)
from .webhooks import admin as webhooks_admin  # noqa: E402, F401  (registers the webhook admin)
