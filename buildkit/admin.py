"""Admin for agent templates: a "Playground" page per agent type, over the build-kit services.

The page shows the playground build kit (read-only, removed on commit) with an on/off switch, the
draft template in a JSON editor with validation messages, a hint beside each draft value the kit
overrides, "Run in playground" (queues a run of the draft with an instruction through
``services.playground_start_run``, on the playground agent of that draft, spawned on the first run and reused
while the draft, the config and the name stay the same; the config comes from its own editor, prefilled by
``config_initial`` and checked against the agent type's config schema), "Commit" (``services.template_commit``,
never with the kit), and the revision history with diffs. Both editors take strict JSON only
(``parse_json_object``): NaN, Infinity, NUL characters and over-deep documents are form errors. Every refusal (no
project, a draft that is not JSON, a draft the same as the latest revision) is also a message at the top of the
page. Staff who are not superusers run in the projects of the workspaces where their role writes.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Max
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html

from agents.forms import ProjectChoiceField
from agents.runtime.services import INSTRUCTION_MAX_LENGTH
from projects.admin import workspace_scope
from projects.choices import WRITE_ROLES
from projects.models import Project
from syndarix.exceptions import DomainError

from . import services
from .embed import embed_slug
from .models import AgentTemplate
from .overlay import IDENTITIES, OVERRIDE_HINT, apply_overlay, tool_identity
from .permissions import can_commit_templates
from .platform_ops import get_op
from .schema import check_document, template_errors
from .selectors import revision_queryset, template_diff

#: What "Run in playground" asks the agent to do until the person says otherwise.
DEFAULT_INSTRUCTION = "Show what you can do with your tools: look around the project and report what you find."
#: The draft a type without revisions starts from.
STARTER_TEMPLATE = {
    "instructions": {"agents_md": "Describe what this agent does and how it should work."},
    "llm": {"model": "gpt-4.1-mini"},
    "tools": [],
    "skills": [],
    "sandbox": {"permissions": {}},
}
#: Revisions shown in the history (newest first).
HISTORY_LIMIT = 50
#: How the page's messages name the form's fields.
_FIELD_NAMES = {"draft": "draft template", "config": "config", "project": "project", "name": "agent name",
                "message": "commit message", "instruction": "instruction", "__all__": "form"}


class PlaygroundForm(forms.Form):
    """The playground's one form; ``action`` says which button was pressed."""

    draft = forms.CharField(widget=forms.Textarea(attrs={"rows": 26, "spellcheck": "false", "class": "bk-editor"}))
    build_kit = forms.BooleanField(required=False, initial=True)
    project = ProjectChoiceField(queryset=Project.objects.none(), required=False, empty_label="Choose a project")
    name = forms.CharField(max_length=200, required=False)
    config = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false", "class": "bk-editor bk-config"})
    )
    message = forms.CharField(max_length=2000, required=False)
    instruction = forms.CharField(
        max_length=INSTRUCTION_MAX_LENGTH, required=False, widget=forms.Textarea(attrs={"rows": 3}),
    )

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        projects = Project.objects.writable_by(user).select_related("workspace").order_by("workspace__name", "name")
        self.fields["project"].queryset = workspace_scope(user, projects, "workspace", roles=WRITE_ROLES)

    def clean_draft(self) -> dict[str, Any]:
        return parse_json_object(self.cleaned_data["draft"], field="template", what="The template")

    def clean_config(self) -> dict[str, Any]:
        """The run's instance config; blank is ``{}``."""
        text = self.cleaned_data["config"]
        return parse_json_object(text, field="config", what="The config") if text.strip() else {}


_NO_EXAMPLE = object()
_EMPTY_BY_TYPE = {"string": "", "integer": 0, "number": 0, "boolean": False, "array": [], "object": {}, "null": None}


def _example(spec: dict[str, Any]) -> Any:
    """A value for a required property without a default: its ``const``, first ``enum`` or
    ``examples`` value, else its ``minimum`` (numbers) or the empty value of its type."""
    if "const" in spec:
        return spec["const"]
    for key in ("enum", "examples"):
        if isinstance(spec.get(key), list) and spec[key]:
            return spec[key][0]
    types = spec.get("type")
    if isinstance(types, str):
        types = [types]
    elif isinstance(types, list):
        types = [t for t in types if t != "null"] or types
    else:
        types = []
    kind = types[0] if types and isinstance(types[0], str) else None
    if kind in ("integer", "number") and isinstance(spec.get("minimum"), int | float):
        return spec["minimum"]
    return copy.deepcopy(_EMPTY_BY_TYPE[kind]) if kind in _EMPTY_BY_TYPE else _NO_EXAMPLE


def config_initial(schema: Any) -> dict[str, Any]:
    """The config a playground run starts from, read off an agent type's ``config_schema``.

    Every top-level property's ``default``, and for each ``required`` property without one an
    example (``_example``): an enum's first value, or an empty value of the property's type that the
    person fills in (validation then names what is still missing, by path).
    """
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return {}
    required = {name for name in schema.get("required") or [] if isinstance(name, str)}
    initial: dict[str, Any] = {}
    for name, spec in schema["properties"].items():
        if not isinstance(spec, dict):
            continue
        if "default" in spec:
            initial[name] = copy.deepcopy(spec["default"])
        elif name in required and (value := _example(spec)) is not _NO_EXAMPLE:
            initial[name] = value
    return initial


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_object(text: str, *, field: str, what: str) -> dict[str, Any]:
    """Parse ``text`` as a JSON object the database can store, or raise a form ``ValidationError``.

    Strict JSON (``NaN`` and ``Infinity`` are refused), nesting beyond the interpreter's limit is an
    error rather than a crash, and the value passes ``schema.check_document`` (depth, NUL
    characters, size).
    """
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from exc
    except ValueError as exc:
        raise ValidationError(f"Not valid JSON: {exc}.") from exc
    except RecursionError as exc:
        raise ValidationError(f"{what} is nested too deeply to read.") from exc
    if not isinstance(value, dict):
        raise ValidationError(f"{what} must be a JSON object.")
    try:
        check_document(value, field=field, what=what)
    except DomainError as exc:
        raise ValidationError(exc.message) from exc
    return value


def _display_name(entry: dict[str, Any]) -> str:
    """An embed row's label: the display ``name`` beside the embed, else the slug it references."""
    name = entry.get("name")
    return name if isinstance(name, str) and name else embed_slug(entry) or ""


def _kit_rows(overlay: dict[str, Any], draft: Any, overrides: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The overlay as read-only rows, grouped as the page shows them.

    A row whose entry replaces one of the draft's values says so (``overrides`` is empty when the
    kit is off).
    """
    overridden: set[str] = set()
    draft_tools = draft.get("tools") if isinstance(draft, dict) else None
    for override in overrides:
        parts = override["path"].split(".")
        if parts[:2] == ["sandbox", "permissions"] and len(parts) > 2:
            overridden.add(f"permission:{parts[2]}")
        elif parts[0] == "tools" and len(parts) > 1 and isinstance(draft_tools, list) and parts[1].isdigit() \
                and int(parts[1]) < len(draft_tools):
            overridden.add(tool_identity(draft_tools[int(parts[1])]) or "")
    note = "replaces your entry"
    groups: dict[str, list[dict[str, Any]]] = {
        "Platform tools": [], "Embedded tools": [], "Embedded skills": [], "Sandbox permissions": []
    }
    for tool in overlay.get("tools", []):
        identity = tool_identity(tool)
        if tool.get("type") == "platform":
            op = get_op(tool["op"])
            groups["Platform tools"].append({
                "name": tool["op"], "detail": op.description if op else "", "value": tool.get("permission", ""),
                "note": note if identity in overridden else "",
            })
        elif embed_slug(tool):
            groups["Embedded tools"].append({
                "name": _display_name(tool), "detail": embed_slug(tool), "value": "embed",
                "note": note if identity in overridden else "",
            })
    for skill in overlay.get("skills", []):
        groups["Embedded skills"].append(
            {"name": _display_name(skill), "detail": embed_slug(skill), "value": "embed", "note": ""}
        )
    for name, value in (overlay.get("sandbox") or {}).get("permissions", {}).items():
        groups["Sandbox permissions"].append(
            {"name": name, "detail": "", "value": value,
             "note": "replaces your value" if f"permission:{name}" in overridden else ""}
        )
    return [{"title": title, "wide": title == "Platform tools", "rows": rows} for title, rows in groups.items()]


def _entry_label(draft: Any, path: str) -> str:
    """For a path into a list entry (``tools.1.permission``), the entry's identity (``platform:spawn_agent``)."""
    parts = path.split(".")
    if len(parts) < 2 or parts[0] not in IDENTITIES or not parts[1].isdigit() or not isinstance(draft, dict):
        return ""
    entries = draft.get(parts[0])
    if not isinstance(entries, list) or int(parts[1]) >= len(entries):
        return ""
    return IDENTITIES[parts[0]](entries[int(parts[1])]) or ""


_TOP_ORDER = ("instructions", "llm", "tools", "skills", "mcps", "sandbox", "runner", "harness")
_ENTRY_ORDER = ("type", "op", "name", "slug", "@ag.embed")


def _ordered(template: Any) -> Any:
    """The template with its keys in reading order (the database does not keep object key order)."""
    if not isinstance(template, dict):
        return template

    def entry(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        first = {k: value[k] for k in _ENTRY_ORDER if k in value}
        return {**first, **{k: v for k, v in value.items() if k not in first}}

    top = {k: template[k] for k in _TOP_ORDER if k in template}
    ordered = {**top, **{k: v for k, v in template.items() if k not in top}}
    for key in ("tools", "skills", "mcps"):
        if isinstance(ordered.get(key), list):
            ordered[key] = [entry(e) for e in ordered[key]]
    return ordered


def _admin_url(name: str, pk: Any) -> str | None:
    """The admin page ``name`` of ``pk``, or ``None`` when that admin is not installed."""
    try:
        return reverse(name, args=[pk])
    except NoReverseMatch:
        return None


def _json(value: Any) -> str:
    return json.dumps(_ordered(value), indent=2, ensure_ascii=False)


@admin.register(AgentTemplate)
class AgentTemplateAdmin(admin.ModelAdmin):
    """Agent types as templates. Opening one goes to its playground; editing the type itself is the
    agent type admin's job, so nothing is added or deleted here."""

    list_display = ("name", "slug", "latest_version", "revisions", "is_active", "updated_at", "playground_link")
    list_filter = ("is_active",)
    search_fields = ("name", "slug", "description")
    ordering = ("name",)
    list_select_related = False  # no relations; the revision figures are annotations
    list_per_page = 50

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            latest_revision=Max("revisions__version"), revision_count=Count("revisions")
        )

    @admin.display(description="latest", ordering="latest_revision")
    def latest_version(self, obj) -> str:
        return f"v{obj.latest_revision}" if obj.latest_revision else "—"

    @admin.display(description="revisions", ordering="revision_count")
    def revisions(self, obj) -> int:
        return obj.revision_count

    @admin.display(description="")
    def playground_link(self, obj) -> str:
        url = reverse("admin:buildkit_agenttemplate_playground", args=[obj.pk])
        return format_html('<a class="button" href="{}">Playground</a>', url)

    # --- permissions: reading templates follows the agent type permissions ---

    def has_view_permission(self, request, obj=None) -> bool:
        user = request.user
        return (
            super().has_view_permission(request, obj)
            or user.has_perm("agents.view_agenttype")
            or user.has_perm("agents.change_agenttype")
        )

    def has_change_permission(self, request, obj=None) -> bool:
        return can_commit_templates(request.user)

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_module_permission(self, request) -> bool:
        return self.has_view_permission(request)

    # --- the playground page ---

    def get_urls(self):
        custom = [
            path(
                "<path:object_id>/playground/",
                self.admin_site.admin_view(self.playground_view),
                name="buildkit_agenttemplate_playground",
            )
        ]
        return custom + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return HttpResponseRedirect(reverse("admin:buildkit_agenttemplate_playground", args=[object_id]))

    def playground_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        agent_type = self.get_object(request, object_id)  # None for a malformed id too, as on the other admin pages
        if agent_type is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, agent_type):
            raise PermissionDenied
        revisions = list(revision_queryset(agent_type)[: HISTORY_LIMIT + 1])
        latest = revisions[0] if revisions else None
        result = None
        if request.method == "POST":
            form = PlaygroundForm(request.POST, user=request.user)
            action = request.POST.get("action", "validate")
            if form.is_valid():
                if action == "commit":
                    response = self._commit(request, agent_type, form, latest)
                    if response:
                        return response
                elif action == "run":
                    result = self._run(request, agent_type, form)
            else:
                verb = {"commit": "committed", "run": "run"}.get(action, "validated")
                where = " and the ".join(_FIELD_NAMES.get(name, name) for name in form.errors)
                messages.error(request, f"Not {verb}: correct the {where} (the errors are shown below).")
        else:
            draft = latest.template if latest else STARTER_TEMPLATE
            config = json.dumps(config_initial(agent_type.config_schema), indent=2, ensure_ascii=False)
            initial = {"draft": _json(draft), "build_kit": True, "config": config, "instruction": DEFAULT_INSTRUCTION}
            form = PlaygroundForm(initial=initial, user=request.user)
        return TemplateResponse(
            request, "admin/buildkit/agenttemplate/playground.html",
            self._context(request, agent_type, form, revisions, latest, result),
        )

    def _commit(self, request, agent_type, form, latest) -> HttpResponse | None:
        if not can_commit_templates(request.user):
            messages.error(request, "Committing needs staff status and the permission to change agent types.")
            return None
        if latest is not None and form.cleaned_data["draft"] == latest.template:
            messages.error(request, f"Not committed: the draft is the same as v{latest.version}; change it first.")
            return None
        try:
            revision = services.template_commit(
                agent_type=agent_type, template=form.cleaned_data["draft"],
                message=form.cleaned_data["message"], author=request.user,
            )
        except ValidationError:
            messages.error(request, "Not committed: the draft has errors (listed under the editor).")
            return None
        except DomainError as exc:
            messages.error(request, f"Not committed: {exc.message}")
            return None
        messages.success(request, f"Committed revision v{revision.version}. The build kit was not included.")
        return HttpResponseRedirect(request.path)

    def _run(self, request, agent_type, form) -> dict[str, Any] | None:
        project = form.cleaned_data["project"]
        if project is None:
            form.add_error("project", "Choose a project to run in.")
            messages.error(request, "Not run: choose a project to run in (under “Run in playground”).")
            return None
        if not form.cleaned_data["instruction"].strip():
            form.add_error("instruction", "Say what the run should do.")
            messages.error(request, "Not run: give the run an instruction (under “Run in playground”).")
            return None
        try:
            started = services.playground_start_run(
                agent_type=agent_type, project=project, actor=request.user, template=form.cleaned_data["draft"],
                build_kit=form.cleaned_data["build_kit"], name=form.cleaned_data["name"] or None,
                config=form.cleaned_data["config"], instruction=form.cleaned_data["instruction"],
            )
        except ValidationError as exc:
            paths = exc.message_dict
            if all(path == "config" or path.startswith("config.") for path in paths):
                messages.error(request, "Not run: the config has errors (listed under it).")
            else:
                messages.error(request, "Not run: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in paths.items()))
            return None
        except DomainError as exc:
            messages.error(request, f"Not run: {exc.message}")
            return None
        agent = started.playground.agent
        how = "reused" if started.reused else "spawned"
        messages.success(request, f"Queued a run of the draft on the playground agent “{agent}” ({how}) in "
                                  f"{project.name}.")
        return {
            "agent": agent, "agent_url": _admin_url("admin:agents_agentinstance_change", agent.pk),
            "run": started.run, "run_url": _admin_url("admin:agents_agentrun_change", started.run.pk),
            "reused": started.reused, "effective": _json(started.playground.effective),
            "overrides": started.playground.overrides, "build_kit": started.playground.build_kit,
        }

    def _context(self, request, agent_type, form, revisions, latest, result) -> dict[str, Any]:
        build_kit_on = form.initial.get("build_kit", True) if not form.is_bound else bool(
            form.data.get("build_kit"))
        draft = form.cleaned_data.get("draft") if form.is_bound and hasattr(form, "cleaned_data") else None
        if draft is None and not form.is_bound:
            draft = latest.template if latest else STARTER_TEMPLATE
        draft_errors = template_errors(draft) if isinstance(draft, dict) else {}
        config_errors: dict[str, list[str]] = {}
        config = form.cleaned_data.get("config") if form.is_bound and hasattr(form, "cleaned_data") else None
        if config is not None:
            try:
                agent_type.validate_config(config)
            except ValidationError as exc:
                config_errors = exc.message_dict
        overlay = services.playground_overlay()
        overrides: list[dict[str, Any]] = []
        if overlay is not None and isinstance(draft, dict) and build_kit_on:
            _, overrides = apply_overlay(draft, overlay)
        shown = revisions[:HISTORY_LIMIT]
        history = []
        for index, revision in enumerate(shown):
            previous = revisions[index + 1] if index + 1 < len(revisions) else None
            history.append(
                {
                    "revision": revision,
                    "previous": previous,
                    "patch": [
                        {**op, "value_json": json.dumps(op["value"], ensure_ascii=False) if "value" in op else ""}
                        for op in template_diff(previous.template, revision.template)
                    ] if previous else None,
                    "template": _json(revision.template),
                }
            )
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Playground: {agent_type.name}",
            "subtitle": None,
            "agent_type": agent_type,
            "form": form,
            "latest": latest,
            "build_kit_on": build_kit_on,
            "kit_groups": _kit_rows(overlay, draft, overrides) if overlay is not None else None,
            "overrides": [
                {**o, "user_json": json.dumps(o["user_value"]), "kit_json": json.dumps(o["kit_value"]),
                 "entry": _entry_label(draft, o["path"])}
                for o in overrides
            ],
            "override_hint": OVERRIDE_HINT,
            "draft_errors": sorted(draft_errors.items()),
            "config_errors": sorted(config_errors.items()),
            "config_required": (agent_type.config_schema or {}).get("required") or [],
            "can_commit": can_commit_templates(request.user),
            "draft_unreadable": form.is_bound and bool(form.errors.get("draft")),
            "no_projects_hint": "" if request.user.is_superuser or form.fields["project"].queryset.exists() else (
                "No project to run in: staff run drafts in the projects of the workspaces where they are an admin or "
                "operator, and you are not one in any workspace. Ask a workspace admin to add you."
            ),
            "history": history,
            "history_truncated": len(revisions) > HISTORY_LIMIT,
            "result": result,
        }
