"""Django admin for the runtime: runs, their traces, and what they ask people. A thin UI over
``agents.runtime.services`` and ``agents.runtime.selectors``.

- The runs list (read-only: nobody adds or edits a run by hand) with a "Cancel selected runs" action
  (``run_cancel`` per run).
- A run's page: its summary, a Cancel button, its pending requests (Approve / Deny an approval with
  ``run_request_decide``; answer or decline an input or connection request with ``run_request_answer``)
  and its full step trace.
- ``AgentRunInline``: an agent's latest runs on the agent's page (``agents.admin``).
- The index section "Runs": run counts by status, the requests waiting for a person and the agents
  whose worker stopped beating (``agents.runtime.selectors``).

Permissions: viewing needs ``agents.view_agentrun``; cancelling and answering need
``agents.change_agentrun``; queueing a run (the agent page's "Run…") needs ``agents.add_agentrun``. Staff who are not
superusers see the runs of their workspaces and operate them where their role writes (``WorkspaceScopedAdminMixin``).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse, HttpResponseBadRequest, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.timesince import timesince
from django.utils.translation import ngettext

from aiservices.llm import OFFLINE
from projects.admin import WorkspaceScopedAdminMixin, workspace_scope
from projects.choices import WRITE_ROLES
from projects.selectors import member_workspace_ids
from syndarix.admin_site import LatestRowsFormSet, ReadOnlyAdminMixin, precise_time
from syndarix.exceptions import DomainError

from ..choices import RUN_FINISHED_STATUSES, RunRequestKind, RunRequestStatus, RunStatus
from ..exceptions import SERVICE_ERRORS, describe_error
from ..models import AgentRun, AgentRunRequest
from . import selectors, services
from .forms import RequestedSchemaForm, RunAnswerForm, RunDecisionForm, schema_form_supported
from .timeline import run_timeline

#: Runs shown on an agent's page; the runs list shows all of them.
RUNS_INLINE_LIMIT = 20
#: Most steps a run's page shows (a run stops after ``AGENT_RUN_MAX_STEPS`` LLM calls, so this is rarely reached).
TRACE_PAGE_LIMIT = 500
#: Rows of each list of the index section.
DASHBOARD_LIMIT = 20
#: Characters of a request's arguments (or message) shown on the index.
SUMMARY_CHARS = 120

#: The index counts the runs of each status up to this many (then shows "1,000+").
DASHBOARD_COUNT_CAP = 1000
#: Run states the index counts, in this order.
DASHBOARD_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING, RunStatus.PAUSED)

#: The fragments of a run's page, each a template that renders alone (``AgentRunAdmin.live_fragment_view``).
RUN_FRAGMENTS = {
    "summary": "admin/agents/agentrun/_summary.html",
    "pending": "admin/agents/agentrun/_pending.html",
    "requests": "admin/agents/agentrun/_past_requests.html",
    "timeline": "admin/agents/agentrun/_timeline.html",
    "trace": "admin/agents/agentrun/_trace.html",
}
#: Event types of a run's status and steps, and of its requests (``agents.events``).
RUN_EVENT_TYPES = (
    "run.queued", "run.started", "run.step", "run.waiting", "run.paused", "run.succeeded", "run.failed",
    "run.cancelled",
)
REQUEST_EVENT_TYPES = ("request.created", "request.decided")
#: Which events make each fragment of a run's page fetch itself again.
RUN_FRAGMENT_EVENTS = {
    "summary": RUN_EVENT_TYPES + REQUEST_EVENT_TYPES,
    "pending": tuple(t for t in RUN_EVENT_TYPES if t != "run.step") + REQUEST_EVENT_TYPES,
    "requests": tuple(t for t in RUN_EVENT_TYPES if t != "run.step") + REQUEST_EVENT_TYPES,
    "timeline": RUN_EVENT_TYPES + REQUEST_EVENT_TYPES,
    "trace": RUN_EVENT_TYPES,
}
#: Which events of the user's workspaces refresh the runs list (a step changes its Steps, Tokens and Cost columns).
RUN_LIST_EVENTS = RUN_EVENT_TYPES + REQUEST_EVENT_TYPES
#: A burst of events (a step, then the run's status) is one refresh: a fragment waits this long (ms) after the last.
LIVE_DEBOUNCE_MS = 100
#: The scripts of the live pages: htmx and its SSE extension (vendored, see ``agents/static/agents/vendor/README.md``),
#: then the page glue (connection status, an LLM call's text as it streams, the runs list's selection).
LIVE_SCRIPTS = ("agents/vendor/htmx.min.js", "agents/vendor/htmx-ext-sse.js", "agents/live.js")
#: The index's "Stale heartbeats" changes with time, not events: it also refreshes this often (seconds).
STALE_REFRESH_SECONDS = 5

OFFLINE_NOTE = "Offline provider: no LLM is configured, answers are scripted (set AGENT_LLM_API_URL)"


def offline_provider() -> bool:
    """True when runs talk to the offline provider (``AGENT_LLM_PROVIDER=offline``): no LLM is configured."""
    return settings.AGENT_LLM_PROVIDER == OFFLINE


def run_status_badge(status: str, *, short: bool = False):
    """A run's status as a coloured badge; ``short`` shows the bare status ("Waiting") with the label as its title."""
    label = RunStatus(status).label
    return format_html(
        '<span class="run-status run-status-{}" title="{}">{}</span>', status, label,
        status.capitalize() if short else label,
    )


def run_cost(run: AgentRun):
    """The run's cost (USD), marked ``unpriced`` when some of its tokens came from a model without a price."""
    if not run.unpriced_tokens:
        return f"{run.cost:,.4f}"
    return format_html('{} <span class="unpriced" title="{} tokens of a model without a price, metered at 0 USD">'
                       'unpriced</span>', f"{run.cost:,.4f}", f"{run.unpriced_tokens:,}")


def short_id(run_id) -> str:
    """The first 8 hex digits of a run's id (how runs are named in lists and messages)."""
    return str(run_id)[:8]


def stacked_time(value):
    """A timestamp as day over time (``Nov 28`` / ``07:21:04``: narrow list columns; the year only when it is not
    this year), with the full timestamp as its title; ``-`` for ``None``."""
    if value is None:
        return "-"
    moment = timezone.localtime(value)
    day = date_format(moment, "M j" if moment.year == timezone.localtime().year else "M j, Y")
    return format_html(
        '<span class="run-time" title="{}">{}<br><small>{}</small></span>', precise_time(value), day,
        moment.strftime("%H:%M:%S"),
    )


def ago(value) -> str:
    """``"3 minutes ago"``, ``"just now"`` under a minute, ``"never"`` for ``None``."""
    if value is None:
        return "never"
    text = timesince(value, depth=1)
    return "just now" if text.startswith("0\xa0") else f"{text} ago"


def pretty_json(value: Any) -> str:
    """``value`` as indented JSON (for ``<pre>``; the template escapes it)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=False)


def request_summary(request: AgentRunRequest, *, chars: int = SUMMARY_CHARS) -> str:
    """One line about what a request asks: the approval's arguments (compact JSON), else its message."""
    if request.kind == RunRequestKind.APPROVAL or not request.message:
        text = json.dumps(request.arguments, ensure_ascii=False, separators=(", ", ": "), default=str)
    else:
        text = request.message
    return Truncator(text).chars(chars)


def id_prefix_range(term: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The lowest and highest UUIDs that start with ``term`` (hex digits, dashes ignored; at least 4 digits), or
    ``None`` when ``term`` is no such prefix."""
    digits = term.strip().lower().replace("-", "")
    if not re.fullmatch(r"[0-9a-f]{4,32}", digits):
        return None
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))


def live_trigger(event_types, *, every: int | None = None) -> str:
    """The ``hx-trigger`` of a live fragment: each of ``event_types`` of the page's stream (``sse:<type>``), debounced
    by ``LIVE_DEBOUNCE_MS``, the stream's (re)connection, plus ``every <n>s`` when given."""
    triggers = [f"sse:{event_type} delay:{LIVE_DEBOUNCE_MS}ms" for event_type in event_types]
    # Each (re)connection refreshes too: what changed between the page's render (or a lost connection) and the
    # stream's start is not on the stream.
    triggers.append("htmx:sseOpen from:closest .live-region")
    if every:
        triggers.append(f"every {every}s")
    return ", ".join(triggers)


#: The admin stream's first frame: the browser reconnects 1 s after a lost connection (not the default 3 s), and the
#: response starts at once (under WSGI, ``runserver``, its headers go out with the first bytes of the body, and an
#: idle stream's first bytes would be its keep-alive comment, seconds later).
STREAM_OPENING = b"retry: 1000\n\n"


async def admin_stream(stream: AsyncIterator[bytes], *, workspace_ids=None) -> AsyncIterator[bytes]:
    """``stream`` (``agents.events.streams.event_stream``) as the admin's live pages read it: ``STREAM_OPENING``,
    then its frames, only those of events of ``workspace_ids`` (strings) when given, and its comments. The filter is
    for a staff member of several workspaces (the outbox filters one workspace at a time)."""
    allowed = set(workspace_ids) if workspace_ids is not None else None
    try:
        yield STREAM_OPENING
        async for chunk in stream:
            if allowed is not None and chunk.startswith(b"id:"):
                body = json.loads(chunk.partition(b"\ndata: ")[2])
                if body.get("workspace_id") not in allowed:
                    continue
            yield chunk
    finally:
        await stream.aclose()


def run_live_context(run: AgentRun) -> dict[str, Any]:
    """What makes a run's page live (``run_page.html``): the run's event stream (the admin's, ``live_events_view``;
    none for a finished run) and, per fragment, its URL and the events that refresh it."""
    return {
        # A finished run changes no more: its page opens no stream.
        "stream_url": "" if run.status in RUN_FINISHED_STATUSES
        else reverse("admin:agents_agentrun_events") + f"?run={run.pk}",
        "fragments": {
            name: {"url": reverse("admin:agents_agentrun_fragment", args=[run.pk, name]),
                   "trigger": live_trigger(RUN_FRAGMENT_EVENTS[name])}
            for name in RUN_FRAGMENTS
        },
    }


def pending_request_rows(run: AgentRun, requests: list[AgentRunRequest], *, answer_form=None) -> list[dict[str, Any]]:
    """The pending requests of ``run`` (``requests``: all of its requests, oldest first) as the page shows them, each
    with its form: Approve/Deny for an approval; for the first input or connection request, its answer form
    (``answer_form``, the one just posted with its errors, or a new one); the later ones wait their turn.

    Each row has a ``key`` that changes only when what its block shows does (the request, and whether it is the one
    to answer): the live page keeps a block whose key did not change (``hx-preserve``), so what a person is typing
    into its form stays while the rest of the page refreshes."""
    pending = [r for r in requests if r.is_pending]
    answerable = next((r for r in pending if r.kind != RunRequestKind.APPROVAL), None)
    rows = []
    for req in pending:
        row = {
            "request": req, "kind": RunRequestKind(req.kind).label, "arguments": pretty_json(req.arguments),
            "age": ago(req.requested_at), "key": f"run-request-{req.pk}",
        }
        if req.kind == RunRequestKind.APPROVAL:
            row["decide_url"] = reverse("admin:agents_agentrun_decide", args=[run.pk, req.pk])
            row["form"] = RunDecisionForm(auto_id=f"id_{req.pk.hex[:8]}_%s")
        elif req is answerable:
            row["schema"] = pretty_json(_answer_schema(req))
            row["answer_url"] = reverse("admin:agents_agentrun_answer", args=[run.pk])
            row["form"] = answer_form or answer_form_for(req)
            row["generated"] = isinstance(row["form"], RequestedSchemaForm)
            row["unsupported"] = unsupported_schema(req)
            row["key"] += "-answer"
        else:
            row["key"] += "-later"
        rows.append(row)
    return rows


def can_operate_runs(request) -> bool:
    """May the user cancel runs and answer their requests (``agents.change_agentrun``)?"""
    return request.user.has_perm("agents.change_agentrun")


@admin.register(AgentRun)
class AgentRunAdmin(WorkspaceScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Runs, read-only; cancelling and answering go through the run's page and the bulk action."""

    list_display = (
        "run_id", "agent_link", "project", "status_display", "steps", "tokens", "cost_display", "attempts", "created",
        "finished",
    )
    list_display_links = ("run_id",)
    list_select_related = ("agent__project__workspace",)
    list_filter = ("status", "agent__project__workspace", "agent__project")
    search_fields = ("agent__name", "instruction")
    search_help_text = "An agent's name, words of the instruction, or the start of a run's id (as the list shows it)."
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    actions = ("cancel_selected",)
    workspace_path = "agent__project__workspace"

    class Media:
        css = {"all": ("agents/admin.css",)}
        js = LIVE_SCRIPTS

    def get_queryset(self, request):
        queryset = self.scope(request, selectors.run_queryset())
        ordering = self.get_ordering(request)
        return queryset.order_by(*ordering) if ordering else queryset

    def get_search_results(self, request, queryset, search_term):
        """Also find runs by the start of their id (``3f2a9c1b``, the 8 hex digits the list shows, or more): a range
        of the primary key's index, so it is as fast at a million runs as at ten."""
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        bounds = id_prefix_range(search_term)
        if bounds is not None:
            queryset |= self.get_queryset(request).filter(pk__gte=bounds[0], pk__lte=bounds[1])
        return queryset, may_have_duplicates

    # --- Permissions: nobody adds, edits or deletes runs here (ReadOnlyAdminMixin); people operate them. ---

    def has_operate_permission(self, request, obj: AgentRun | None = None) -> bool:
        """Cancel runs and answer their requests (the permission of the bulk action too); for ``obj``, also a
        writing role in its workspace."""
        return can_operate_runs(request) and (obj is None or self.can_write(request, obj))

    # --- Columns. ---

    @admin.display(description="Run", ordering="created_at")
    def run_id(self, obj: AgentRun):
        return format_html('<span class="run-id" title="{}">{}</span>', obj.pk, short_id(obj.pk))

    @admin.display(description="Steps", ordering="steps_completed")
    def steps(self, obj: AgentRun) -> int:
        return obj.steps_completed

    @admin.display(description="Agent", ordering="agent__name")
    def agent_link(self, obj: AgentRun):
        url = reverse("admin:agents_agentinstance_change", args=[obj.agent_id])
        return format_html('<a href="{}">{}</a>', url, obj.agent)

    @admin.display(description="Project", ordering="agent__project__name")
    def project(self, obj: AgentRun) -> str:
        return obj.agent.project.name

    @admin.display(description="Status", ordering="status")
    def status_display(self, obj: AgentRun):
        pending = getattr(obj, "pending_requests", None)
        if not pending:
            return run_status_badge(obj.status, short=True)
        first = pending[0]
        return format_html(
            '{}<br><span class="run-pending">{}: {}</span>', run_status_badge(obj.status, short=True),
            RunRequestKind(first.kind).label.split(" ")[0].lower(), first.tool_name,
        )

    @admin.display(description="Tokens", ordering="tokens_used")
    def tokens(self, obj: AgentRun) -> str:
        return f"{obj.tokens_used:,}"

    @admin.display(description="Cost (USD)", ordering="cost")
    def cost_display(self, obj: AgentRun) -> str:
        return run_cost(obj)

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj: AgentRun):
        return stacked_time(obj.created_at)

    @admin.display(description="Finished", ordering="finished_at")
    def finished(self, obj: AgentRun):
        return stacked_time(obj.finished_at)

    def changelist_view(self, request, extra_context=None):
        live = {"stream_url": reverse("admin:agents_agentrun_events"), "url": request.get_full_path(),
                "trigger": live_trigger(RUN_LIST_EVENTS)}
        extra_context = {**(extra_context or {}), "offline_note": OFFLINE_NOTE if offline_provider() else "",
                         "live": live}
        return super().changelist_view(request, extra_context=extra_context)

    # --- The bulk action. ---

    @admin.action(description="Cancel selected runs…", permissions=["operate"])
    def cancel_selected(self, request, queryset):
        """After a confirmation page, ``run_cancel`` for each selected run (in primary-key order); reports "N runs
        cancelled", the runs that were cancelled already, and each failure."""
        if request.POST.get("post") != "yes":
            runs = list(queryset.select_related("agent").order_by("-created_at"))
            context = {
                **self.admin_site.each_context(request), "opts": self.opts, "runs": runs,
                "title": ngettext("Cancel %(count)d run?", "Cancel %(count)d runs?", len(runs)) % {"count": len(runs)},
                "finished": sum(run.status in RUN_FINISHED_STATUSES for run in runs),
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, "admin/agents/agentrun/cancel_confirmation.html", context)
        cancelled, already, failed = [], [], []
        for run in queryset.order_by("pk"):
            if not self.has_operate_permission(request, run):
                failed.append((run, "your role in its workspace is read-only."))
                continue
            if run.status == RunStatus.CANCELLED:
                already.append(run)
                continue
            try:
                result = services.run_cancel(run, actor=request.user)
            except SERVICE_ERRORS as exc:
                failed.append((run, describe_error(exc)))
                continue
            cancelled.append(result)
            self.log_change(request, result, "Cancelled (bulk action)")
        if cancelled:
            text = ngettext("%(count)d run cancelled.", "%(count)d runs cancelled.", len(cancelled))
            self.message_user(request, text % {"count": len(cancelled)}, messages.SUCCESS)
        if already:
            text = ngettext("%(count)d run was already cancelled: %(ids)s.",
                            "%(count)d runs were already cancelled: %(ids)s.", len(already))
            ids = ", ".join(short_id(run.pk) for run in already)
            self.message_user(request, text % {"count": len(already), "ids": ids}, messages.INFO)
        for run, error in failed:
            self.message_user(
                request, f"Could not cancel run {short_id(run.pk)} of “{run.agent}”: {error}", messages.ERROR
            )

    # --- The run's page and its buttons. ---

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        return [
            path("live/events/", wrap(self.live_events_view), name="{}_{}_events".format(*info)),
            path("live/index/<slug:fragment>/", wrap(self.index_fragment_view),
                 name="{}_{}_index_fragment".format(*info)),
            path("<path:object_id>/cancel/", wrap(self.cancel_view), name="{}_{}_cancel".format(*info)),
            path(
                "<path:object_id>/requests/<uuid:request_pk>/decide/", wrap(self.decide_view),
                name="{}_{}_decide".format(*info),
            ),
            path("<path:object_id>/answer/", wrap(self.answer_view), name="{}_{}_answer".format(*info)),
            path("<path:object_id>/live/<slug:fragment>/", wrap(self.live_fragment_view),
                 name="{}_{}_fragment".format(*info)),
            *super().get_urls(),
        ]

    def run_url(self, run: AgentRun) -> str:
        return reverse("admin:agents_agentrun_change", args=[run.pk], current_app=self.admin_site.name)

    def _get_run(self, request, object_id, *, operate: bool):
        """``(run, None)``, or ``(None, redirect)`` when it does not exist; 403 without the permission."""
        run = self.get_object(request, unquote(object_id))
        if run is None:
            return None, self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, run) or (operate and not self.has_operate_permission(request, run)):
            raise PermissionDenied
        return run, None

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The run's page (read-only; its buttons post to their own views)."""
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        run, response = self._get_run(request, object_id, operate=False)
        return response or self.render_run_page(request, run)

    def render_run_page(self, request, run: AgentRun, *, answer_form=None, status=200):
        """The run's page, in fragments that render alone (``admin/agents/agentrun/_*.html``, see ``RUN_FRAGMENTS``):
        summary (with the budget that paused it), pending requests (with their forms), request history, timeline and
        trace; each refreshes itself from its fragment URL when the run's events say it changed (``live_view``)."""
        context = {
            **self.admin_site.each_context(request),
            **self.run_page_context(request, run, parts=RUN_FRAGMENTS, answer_form=answer_form),
            "opts": self.opts,
            "title": f"Run {short_id(run.pk)} of “{run.agent}”",
            "original": run,
            "offline_note": OFFLINE_NOTE if offline_provider() else "",
            "history_url": reverse("admin:agents_agentrun_history", args=[run.pk]),
            "runs_url": reverse("admin:agents_agentrun_changelist") + f"?agent__id__exact={run.agent_id}",
            "media": self.media + RunAnswerForm().media,
            "live": run_live_context(run),
        }
        return TemplateResponse(request, "admin/agents/agentrun/run_page.html", context, status=status)

    def run_page_context(self, request, run: AgentRun, *, parts, answer_form=None) -> dict[str, Any]:
        """The context of the run page's fragments named in ``parts`` (keys of ``RUN_FRAGMENTS``), computing only
        what those need: a fragment refresh of the summary reads neither the requests nor the steps."""
        parts = set(parts)
        can_operate = self.has_operate_permission(request, run)
        context: dict[str, Any] = {
            "run": run,
            "can_operate": can_operate,
            "operate_refusal": "" if can_operate else self.operate_refusal(request, run),
        }
        if "summary" in parts:
            context.update({
                "status_badge": run_status_badge(run.status),
                "agent_url": reverse("admin:agents_agentinstance_change", args=[run.agent_id]),
                "issue_url": reverse("admin:projects_issue_change", args=[run.issue_id]) if run.issue_id else "",
                "result_json": None if run.result is None else pretty_json(run.result),
                "checkpoint_json": None if run.checkpoint is None else pretty_json(run.checkpoint),
                "cancel_url": reverse("admin:agents_agentrun_cancel", args=[run.pk])
                if can_operate and run.status not in RUN_FINISHED_STATUSES else "",
                "budget": budget_note(run),
            })
        requests = None
        if parts & {"pending", "requests", "timeline"}:
            requests = list(run.requests.select_related("decided_by").order_by("requested_at"))
        if "pending" in parts:
            context["pending_rows"] = pending_request_rows(run, requests, answer_form=answer_form)
        if "requests" in parts:
            context["past_requests"] = [r for r in requests if not r.is_pending]
        if parts & {"timeline", "trace"}:
            steps = list(run.steps.order_by("index")[:TRACE_PAGE_LIMIT])
            if "trace" in parts:
                for step in steps:
                    step.input_json = None if step.input is None else pretty_json(step.input)
                    step.output_json = None if step.output is None else pretty_json(step.output)
                context.update(steps=steps, steps_truncated=run.steps_completed > len(steps))
            if "timeline" in parts:
                context["timeline"] = run_timeline(run, steps, requests)
        return context

    def live_fragment_view(self, request, object_id, fragment):
        """GET one fragment of a run's page (``RUN_FRAGMENTS``), rendered alone with the page's context: what the
        page's live script swaps in when the run's events say that part changed. 404 for a run the user cannot see
        (or that does not exist) and for an unknown fragment; 403 without ``agents.view_agentrun``."""
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        if fragment not in RUN_FRAGMENTS:
            raise Http404("No such fragment of a run's page.")
        run = self.get_object(request, unquote(object_id))
        if run is None:
            raise Http404("No such run.")
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        context = self.run_page_context(request, run, parts=[fragment])
        return TemplateResponse(request, RUN_FRAGMENTS[fragment], context)  # never cached: admin_view

    def live_events_view(self, request):
        """GET the admin's event stream (``text/event-stream``, staff session): what the live pages listen to.

        ``?run=<id>``: that run's events and the text of its LLM calls as they stream (``llm.delta``), for its page;
        404 when the user cannot see the run. Without it: the run and request events of every workspace the user
        sees (all of them for a superuser), for the index and the runs list. ``Last-Event-ID`` resumes after that
        event (the browser sends it when it reconnects). The stream is ``agents.events.streams.event_stream``, the
        one behind the API's streams. 403 without ``agents.view_agentrun``; 400 for a malformed ``Last-Event-ID``.
        """
        from agents.events.streams import event_stream
        from agents.events.views import MAX_EVENT_ID, stream_response

        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        if not request.user.has_perm("agents.view_agentrun"):
            raise PermissionDenied
        after = request.headers.get("Last-Event-ID") or None
        if after is not None and not (after.isascii() and after.isdigit() and int(after) <= MAX_EVENT_ID):
            return HttpResponseBadRequest("Last-Event-ID must be an event id (a non-negative integer).")
        after = int(after) if after is not None else None
        types = RUN_EVENT_TYPES + REQUEST_EVENT_TYPES
        if "run" in request.GET:
            run = self.get_object(request, request.GET["run"])
            if run is None:
                raise Http404("No such run.")
            stream = event_stream(last_event_id=after, project_id=run.agent.project_id, run_id=run.pk, types=types,
                                  deltas=True)
        elif request.user.is_superuser:
            stream = event_stream(last_event_id=after, types=types)
        else:
            workspaces = sorted({str(row["workspace"]) for row in member_workspace_ids(request.user)})
            if not workspaces:
                return HttpResponse(status=204)  # no workspace, nothing to follow: EventSource does not reconnect
            if len(workspaces) == 1:
                stream = event_stream(last_event_id=after, workspace_id=workspaces[0], types=types)
            else:
                return stream_response(request, admin_stream(event_stream(last_event_id=after, types=types),
                                                              workspace_ids=workspaces))
        return stream_response(request, admin_stream(stream))

    def index_fragment_view(self, request, fragment):
        """GET one part of the index's "Runs" section (``INDEX_FRAGMENTS``) over the user's workspaces, rendered
        alone: what the index swaps in when the admin's stream says that part changed (and, for "stale", on a timer).
        404 for an unknown part; 403 without ``agents.view_agentrun`` (the section's own condition)."""
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        if fragment not in INDEX_FRAGMENTS:
            raise Http404("No such part of the index.")
        if not request.user.has_perm("agents.view_agentrun"):
            raise PermissionDenied
        context = {"runtime": runtime_index_context(request, parts=[fragment])}
        return TemplateResponse(request, INDEX_FRAGMENTS[fragment], context)

    def operate_refusal(self, request, run: AgentRun) -> str:
        """Why the user may look at ``run`` but not cancel or answer it, in words."""
        if not can_operate_runs(request):
            return "Your account lacks the “Can change agent run” permission."
        return self.role_refusal(request, run)

    def cancel_view(self, request, object_id):
        """GET: the confirmation page (what cancelling does to this run); POST: ``run_cancel``, then back to the
        run's page."""
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        run, response = self._get_run(request, object_id, operate=True)
        if response:
            return response
        if request.method == "GET":
            if run.status in RUN_FINISHED_STATUSES:
                self.message_user(request, f"Run {short_id(run.pk)} has {run.status}: finished runs are final.",
                                  messages.INFO)
                return redirect(self.run_url(run))
            context = {
                **self.admin_site.each_context(request), "opts": self.opts, "run": run, "original": run,
                "title": f"Cancel run {short_id(run.pk)} of “{run.agent}”?",
                "status_badge": run_status_badge(run.status), "run_url": self.run_url(run),
                "pending": run.requests.filter(status=RunRequestStatus.PENDING).count(),
            }
            return TemplateResponse(request, "admin/agents/agentrun/cancel_confirmation.html", context)
        before = run.status
        try:
            run = services.run_cancel(run, actor=request.user)
        except SERVICE_ERRORS as exc:
            self.message_user(request, f"Could not cancel run {short_id(run.pk)}: {describe_error(exc)}",
                              messages.ERROR)
        else:
            if before == RunStatus.CANCELLED:
                self.message_user(request, f"Run {short_id(run.pk)} was already cancelled.", messages.INFO)
            else:
                self.log_change(request, run, f"Cancelled ({before} → {run.status})")
                self.message_user(request, f"Run {short_id(run.pk)} cancelled.", messages.SUCCESS)
        return redirect(self.run_url(run))

    def decide_view(self, request, object_id, request_pk):
        """POST ``decision`` (``approve``/``deny``) and ``reason``: ``run_request_decide``, then back to the run."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        run, response = self._get_run(request, object_id, operate=True)
        if response:
            return response
        pending = run.requests.filter(pk=request_pk, kind=RunRequestKind.APPROVAL).first()
        form = RunDecisionForm(request.POST)
        if pending is None:
            self.message_user(request, "This run has no such approval request.", messages.ERROR)
        elif not form.is_valid():
            errors = "; ".join(str(m) for messages_ in form.errors.values() for m in messages_)
            self.message_user(request, f"Could not decide: {errors}", messages.ERROR)
        else:
            decision = form.cleaned_data["decision"]
            verb = "approve" if decision == "approve" else "deny"
            try:
                decided = services.run_request_decide(
                    pending, decision=decision, reason=form.cleaned_data["reason"], actor=request.user
                )
            except SERVICE_ERRORS as exc:
                self.message_user(request, f"Could not {verb} “{pending.tool_name}”: {describe_error(exc)}",
                                  messages.ERROR)
            else:
                self.log_change(request, run, f"{decided.get_status_display()} {decided.tool_name}")
                self.message_user(
                    request, f"{decided.get_status_display()}: “{decided.tool_name}”. The run continues on a worker.",
                    messages.SUCCESS,
                )
        return redirect(self.run_url(run))

    def answer_view(self, request, object_id):
        """POST ``action`` (``accept``/``decline``) and the answer: the fields of the form generated from the
        request's schema (``RequestedSchemaForm``), or ``content`` (JSON) for a schema it cannot ask field by field;
        then ``run_request_answer``. Input the form or the schema refuses shows the run's page again with each error
        on its field."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        run, response = self._get_run(request, object_id, operate=True)
        if response:
            return response
        pending = run.requests.filter(status=RunRequestStatus.PENDING).exclude(kind=RunRequestKind.APPROVAL).first()
        form = answer_form_for(pending, request.POST)
        if form.is_valid():
            generated = isinstance(form, RequestedSchemaForm)
            action = form.action if generated else form.cleaned_data["action"]
            content = form.content() if generated else form.cleaned_data["content"]
            try:
                answered = services.run_request_answer(run, content=content, action=action, actor=request.user)
            except ValidationError as exc:
                if generated:
                    form.add_schema_errors(exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages})
                else:
                    form.add_error("content", _content_errors(exc))
            except DomainError as exc:
                if exc.field in ("content", "action"):
                    form.add_error(exc.field if not generated else None, exc.message)
                else:
                    self.message_user(request, f"Could not answer: {exc.message}", messages.ERROR)
                    return redirect(self.run_url(run))
            else:
                self.log_change(request, run, f"{answered.get_status_display()} {answered.tool_name}")
                self.message_user(
                    request, f"{answered.get_status_display()}: “{answered.tool_name}”. The run continues on a worker.",
                    messages.SUCCESS,
                )
                return redirect(self.run_url(run))
        if pending is None:
            self.message_user(request, "The run is not waiting for input.", messages.ERROR)
            return redirect(self.run_url(run))
        return self.render_run_page(request, run, answer_form=form)


def _answer_schema(request: AgentRunRequest | None) -> dict:
    """The schema an answer to ``request`` must match: its ``requested_schema`` (input), the connection outcome
    (connections)."""
    if request is not None and request.kind == RunRequestKind.CONNECTION:
        return _connection_schema()
    return (request.requested_schema if request is not None else None) or {"type": "object"}


def answer_form_for(request: AgentRunRequest | None, data=None):
    """The form that answers ``request``: generated from its schema when ``schema_form_supported``, else the JSON
    box (``RunAnswerForm``)."""
    schema = _answer_schema(request)
    if request is not None and schema_form_supported(schema):
        return RequestedSchemaForm(data, schema=schema)
    return RunAnswerForm(data)


def unsupported_schema(request: AgentRunRequest) -> list[str]:
    """Why ``request`` (an input request stored before requestedSchemas had to be MCP elicitation schemas) can only
    be declined: what its schema breaks (``tools.client.requested_schema_errors``); ``[]`` for every other."""
    from .tools.client import requested_schema_errors

    return requested_schema_errors(request.requested_schema) if request.kind == RunRequestKind.INPUT else []


def budget_note(run: AgentRun) -> dict[str, Any] | None:
    """For a run parked because it took its agent over budget (``budget_exceeded``): what was exceeded and what the
    agent's status is now (the agent was paused with reason ``budget``), else ``None``."""
    if run.error_code != "budget_exceeded":
        return None
    return {"exceeded": run.error_message, "agent_status": run.agent.get_status_display().lower(),
            "agent_paused": run.agent.status == "paused"}


def _connection_schema() -> dict:
    from .tools.client import CONNECTION_OUTCOME_SCHEMA

    return CONNECTION_OUTCOME_SCHEMA


def _content_errors(error: ValidationError) -> list[str]:
    """The messages of ``run_request_answer``'s schema errors (keyed ``content.<path>``), each prefixed by its
    path inside the content (``name: 'name' is a required property``)."""
    if not hasattr(error, "error_dict"):
        return list(error.messages)
    out = []
    for key, messages_ in error.message_dict.items():
        where = key.removeprefix("content").lstrip(".")
        out.extend(f"{where}: {message}" if where else message for message in messages_)
    return out


# --- An agent's latest runs, on the agent's page ------------------------------------------------------------


class LatestRunsFormSet(LatestRowsFormSet):
    """The newest ``RUNS_INLINE_LIMIT`` runs only: an agent's runs grow without bound."""

    limit = RUNS_INLINE_LIMIT


class AgentRunInline(ReadOnlyAdminMixin, admin.TabularInline):
    """The agent's latest runs, newest first, each linking to its page."""

    model = AgentRun
    fk_name = "agent"
    formset = LatestRunsFormSet
    fields = ("run_link", "status_display", "task", "steps_completed", "tokens", "cost_display", "created",
              "finished")
    readonly_fields = fields
    ordering = ("-created_at",)
    extra = 0
    verbose_name = "run"
    verbose_name_plural = f"Runs (latest {RUNS_INLINE_LIMIT}, newest first)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("issue")

    @admin.display(description="Run")
    def run_link(self, obj: AgentRun):
        url = reverse("admin:agents_agentrun_change", args=[obj.pk])
        return format_html('<a href="{}" class="run-id">{}</a>', url, short_id(obj.pk))

    @admin.display(description="Status")
    def status_display(self, obj: AgentRun):
        return run_status_badge(obj.status)

    @admin.display(description="Task")
    def task(self, obj: AgentRun) -> str:
        lines = obj.instruction.strip().splitlines()
        text = lines[0] if lines else (obj.issue.title if obj.issue_id else "")
        return Truncator(text).chars(80)

    @admin.display(description="Tokens")
    def tokens(self, obj: AgentRun) -> str:
        return f"{obj.tokens_used:,}"

    @admin.display(description="Cost (USD)")
    def cost_display(self, obj: AgentRun) -> str:
        return run_cost(obj)

    @admin.display(description="Created")
    def created(self, obj: AgentRun) -> str:
        return precise_time(obj.created_at)

    @admin.display(description="Finished")
    def finished(self, obj: AgentRun) -> str:
        return precise_time(obj.finished_at)


# --- The index section ---------------------------------------------------------------------------------------


#: The parts of the index's "Runs" section, each a template that renders alone (``index_fragment_view``).
INDEX_FRAGMENTS = {
    "counts": "admin/agents/_index_run_counts.html",
    "waiting": "admin/agents/_index_waiting.html",
    "stale": "admin/agents/_index_stale.html",
}
#: Which events of the user's workspaces refresh each part of the index ("stale" also on a timer).
INDEX_FRAGMENT_EVENTS = {
    "counts": tuple(t for t in RUN_EVENT_TYPES if t != "run.step"),
    "waiting": REQUEST_EVENT_TYPES + ("run.cancelled", "run.failed", "run.succeeded"),
    "stale": ("run.started", "run.step", "run.waiting", "run.paused", "run.succeeded", "run.failed", "run.cancelled"),
}


def runtime_index_section(request) -> dict[str, Any] | None:
    """The index's "Runs" section for staff who may view runs (``None`` for the others): run counts by status (each
    up to ``DASHBOARD_COUNT_CAP``), the requests waiting for a person (oldest first; ``can_answer`` where the user may
    answer them, else they are only shown) and the agents whose heartbeat is stale, in a fixed number of queries
    (``agents.runtime.selectors``), over the workspaces the user sees. Each part refreshes itself from its fragment
    URL (``index_fragment_view``) on the events of the admin's stream (``live_events_view``)."""
    if not request.user.has_perm("agents.view_agentrun"):
        return None
    return {"runtime": runtime_index_context(request, parts=INDEX_FRAGMENTS)}


def runtime_index_context(request, *, parts) -> dict[str, Any]:
    """The context of the index section's parts named in ``parts`` (keys of ``INDEX_FRAGMENTS``), and what makes
    them live (``live``: the stream's URL, each part's URL and trigger)."""
    user = request.user
    runs_url = reverse("admin:agents_agentrun_changelist")
    context: dict[str, Any] = {
        "runs_url": runs_url,
        "offline_note": OFFLINE_NOTE if offline_provider() else "",
        "heartbeat_timeout": settings.AGENT_HEARTBEAT_TIMEOUT_SECONDS,
        "live": {
            "stream_url": reverse("admin:agents_agentrun_events"),
            "fragments": {
                name: {"url": reverse("admin:agents_agentrun_index_fragment", args=[name]),
                       "trigger": live_trigger(INDEX_FRAGMENT_EVENTS[name],
                                               every=STALE_REFRESH_SECONDS if name == "stale" else None)}
                for name in INDEX_FRAGMENTS
            },
        },
    }
    if "counts" in parts:
        run_counts = selectors.run_counts_capped(
            workspace_scope(user, AgentRun.objects.all(), "agent__project__workspace"), statuses=DASHBOARD_STATUSES,
            cap=DASHBOARD_COUNT_CAP,
        )
        context["counts"] = [
            {"status": status, "badge": run_status_badge(status),
             "count": min(run_counts[status], DASHBOARD_COUNT_CAP), "more": run_counts[status] > DASHBOARD_COUNT_CAP,
             "url": f"{runs_url}?status__exact={status}"}
            for status in DASHBOARD_STATUSES
        ]
    if "waiting" in parts:
        if not can_operate_runs(request):
            writable = set()
        elif user.is_superuser:
            writable = None  # everywhere
        else:
            writable = {row["workspace"] for row in member_workspace_ids(user, roles=WRITE_ROLES)}
        waiting = [
            {
                "request": req,
                "can_answer": writable is None or req.run.agent.project.workspace_id in writable,
                "kind": RunRequestKind(req.kind).label,
                "summary": request_summary(req),
                "age": ago(req.requested_at),
                "run_url": reverse("admin:agents_agentrun_change", args=[req.run_id]),
                "agent_url": reverse("admin:agents_agentinstance_change", args=[req.run.agent_id]),
            }
            for req in workspace_scope(user, selectors.pending_requests(), "run__agent__project__workspace")[
                :DASHBOARD_LIMIT
            ]
        ]
        context.update(waiting=waiting, waiting_truncated=len(waiting) >= DASHBOARD_LIMIT)
    if "stale" in parts:
        stale_agents = list(
            workspace_scope(user, selectors.stale_heartbeats(), "project__workspace")[:DASHBOARD_LIMIT]
        )
        running = dict(
            AgentRun.objects.filter(agent__in=[a.pk for a in stale_agents], status=RunStatus.RUNNING)
            .values_list("agent_id", "pk")
        ) if stale_agents else {}
        context["stale"] = [
            {
                "agent": agent,
                "heartbeat": ago(agent.last_heartbeat_at),
                "heartbeat_at": precise_time(agent.last_heartbeat_at),
                "agent_url": reverse("admin:agents_agentinstance_change", args=[agent.pk]),
                "run_url": reverse("admin:agents_agentrun_change", args=[running[agent.pk]])
                if agent.pk in running else "",
                "run_id": short_id(running[agent.pk]) if agent.pk in running else "",
            }
            for agent in stale_agents
        ]
    return context


admin.site.register_index_section(
    "agents.runtime", template="admin/agents/index_runtime.html", context=runtime_index_section, order=10,
    css=("agents/admin.css",), js=LIVE_SCRIPTS,
)
