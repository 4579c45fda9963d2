"""Admin: the read-only record of AI tool calls, the "Refine a prompt" page, and the LLM price table."""

from __future__ import annotations

import json

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

from syndarix.admin_site import ReadOnlyAdminMixin
from syndarix.api.ratelimit import RateLimited
from syndarix.exceptions import DomainError

from . import services
from .choices import CallOutcome
from .exceptions import InvalidArguments
from .forms import RefinePromptForm
from .models import AIServiceCall, ModelPrice, PromptRefinement
from .prompt_templates import VARIABLE, refined_template
from .tools import NAMESPACE, registry
from .tools.refine_prompt import RefinePromptTool


def _short(tool: str) -> str:
    return tool.removeprefix(NAMESPACE + ".")


class ToolFilter(admin.SimpleListFilter):
    """Registered tools by short name, plus the names of unknown tools callers asked for."""

    title = "tool"
    parameter_name = "tool"

    def lookups(self, request, model_admin):
        return [*((name, _short(name)) for name in registry.names()), ("~unknown", "unknown tools")]

    def queryset(self, request, queryset):
        if self.value() == "~unknown":
            return queryset.exclude(tool__in=registry.names())
        if self.value():
            return queryset.filter(tool=self.value())
        return queryset


_OUTCOME_COLOURS = {CallOutcome.OK: "#2e7d32", CallOutcome.TOOL_ERROR: "#c62828", CallOutcome.REJECTED: "#8d6e00"}


def _can_refine(request) -> bool:
    return request.user.is_staff and services.user_can_call_tools(request.user)


@admin.register(AIServiceCall)
class AIServiceCallAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every tool call, read-only (calls are records, not editable objects); staff who are not superusers see
    their own calls."""

    list_display = ("when", "tool_short", "outcome_badge", "user", "duration", "tokens", "trace", "error")
    list_display_links = ("when",)
    list_filter = ("outcome", ToolFilter, "provider", "created_at")
    search_fields = ("trace_id", "tool", "user__username", "error_code", "error_message")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    fields = ("created_at", "user", "tool", "outcome", "provider", "duration_ms", "tokens", "trace_id", "error_code",
              "error_message")
    readonly_fields = fields

    def get_queryset(self, request):
        """Calls belong to no workspace: superusers see every call, other staff their own."""
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else queryset.filter(user=request.user)

    @admin.display(description="when", ordering="created_at")
    def when(self, obj: AIServiceCall) -> str:
        moment = timezone.localtime(obj.created_at)
        return format_html(
            '<span style="white-space:nowrap">{}</span><br><small>{}</small>',
            moment.strftime("%Y-%m-%d"), moment.strftime("%H:%M:%S"),
        )

    @admin.display(description="tool", ordering="tool")
    def tool_short(self, obj: AIServiceCall) -> str:
        return _short(obj.tool)

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, obj: AIServiceCall) -> str:
        return f"{obj.duration_ms} ms"

    @admin.display(description="trace id", ordering="trace_id")
    def trace(self, obj: AIServiceCall) -> str:
        short = obj.trace_id if len(obj.trace_id) <= 13 else obj.trace_id[:12] + "…"
        return format_html('<code title="{}">{}</code>', obj.trace_id, short)

    @admin.display(description="error")
    def error(self, obj: AIServiceCall) -> str:
        if not obj.error_message:
            return ""
        text = obj.error_message if len(obj.error_message) <= 48 else obj.error_message[:46] + "…"
        return format_html('<span title="{}" style="overflow-wrap:anywhere">{}</span>', obj.error_message, text)

    @admin.display(description="outcome", ordering="outcome")
    def outcome_badge(self, obj: AIServiceCall) -> str:
        colour = _OUTCOME_COLOURS.get(obj.outcome, "#555")
        return format_html('<strong style="color:{};white-space:nowrap">{}</strong>', colour, obj.get_outcome_display())

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_refine": _can_refine(request)}
        return super().changelist_view(request, extra_context=extra_context)


def _highlight(text: str) -> str:
    """HTML of ``text`` with its ``{{variable}}`` tokens marked."""
    return mark_safe(VARIABLE.sub(lambda m: f'<mark class="refine-var">{m.group(0)}</mark>', escape(text)))


@admin.register(PromptRefinement)
class PromptRefinementAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The "Refine a prompt" page: paste a template and guidelines, compare the refined messages
    with the originals, copy the result. It calls the same service as the API (same permission,
    rate limits and call record)."""

    def has_module_permission(self, request) -> bool:
        return _can_refine(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return _can_refine(request)

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}_changelist"
        return [path("", self.admin_site.admin_view(self.refine_view), name=name)]

    def refine_view(self, request):
        if not _can_refine(request):
            raise PermissionDenied
        form = RefinePromptForm(request.POST or None)
        result = None
        if request.method == "POST" and form.is_valid():
            result = self._refine(request, form)
        missing_settings = services.ai_services_missing_settings()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Refine a prompt",
            "form": form,
            "result": result,
            "enabled": not missing_settings,
            "missing_settings": missing_settings,
            "calls_url": reverse("admin:aiservices_aiservicecall_changelist"),
        }
        return TemplateResponse(request, "admin/aiservices/refine_prompt.html", context)

    def _refine(self, request, form: RefinePromptForm) -> dict | None:
        try:
            tool_result = services.tool_call(
                user=request.user,
                name=RefinePromptTool.name,
                arguments=form.arguments(),
                request_id=services.request_id_from(None),
                rate_limit=True,
            )
        except InvalidArguments as exc:
            form.add_argument_problems(exc.problems)
            return None
        except RateLimited as exc:
            form.add_error(None, f"Too many refinements; try again in {exc.retry_after} s.")
            return None
        except DomainError as exc:
            form.add_error(None, exc.message)
            return None
        if tool_result.is_error:
            return {"is_error": True, "message": tool_result.text, "trace_id": tool_result.trace_id}
        template = json.loads(form.cleaned_data["template"])
        refined = tool_result.structured["messages"]
        rows = [
            {
                "number": i + 1,
                "role": after["role"],
                "original": _highlight(before["content"]),
                "refined": _highlight(after["content"]),
                "unchanged": before["content"] == after["content"],
            }
            for i, (before, after) in enumerate(zip(template["messages"], refined, strict=True))
        ]
        refined_json = json.dumps(refined_template(template, refined), indent=2, ensure_ascii=False)
        return {
            "is_error": False,
            "summary": tool_result.structured["summary"],
            "rows": rows,
            "refined_json": refined_json,
            "refined_rows": min(40, refined_json.count("\n") + 2),
            "trace_id": tool_result.trace_id,
            "tokens": tool_result.tokens,
        }


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """The price table the agent runtime's metered LLM client reads: USD per million tokens, per model.

    ``model`` is matched exactly as the upstream names it in its answer; a model without a row costs 0.
    """

    list_display = ("model", "input_usd_per_mtok", "output_usd_per_mtok", "updated_at")
    search_fields = ("model",)
    ordering = ("model",)
    readonly_fields = ("created_at", "updated_at")
    fields = ("model", "input_usd_per_mtok", "output_usd_per_mtok", "created_at", "updated_at")
