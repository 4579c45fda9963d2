"""``tools.syndarix.api.refine_prompt``: improve a prompt template's wording through an upstream LLM."""

from __future__ import annotations

from typing import Any

from ..exceptions import UpstreamError
from ..prompt_templates import OUTPUT_SCHEMA, RefinementRejected, check_refinement, parse_template
from ..providers import get_provider
from .base import NAMESPACE, Tool, ToolResult
from .registry import registry

#: ``content[0].text`` (and ``summary``) when the model said nothing about what it changed.
DEFAULT_SUMMARY = "Prompt refined."
TEMPLATE_MAX_CHARS = 100_000
TEXT_MAX_CHARS = 10_000


@registry.register
class RefinePromptTool(Tool):
    """Refine a JSON prompt template: same messages, roles and ``{{variables}}``, better wording.

    Arguments: ``prompt_template_json`` (1–100,000 chars, a JSON template, see
    ``aiservices.prompt_templates``), ``guidelines`` and ``context`` (optional, ≤ 10,000 chars).
    Result: ``structuredContent = {"messages": [{role, content}], "summary": str}``, ``content[0].text``
    the summary. Upstream failures and refinements that break the template rules are ``isError``
    results naming what went wrong.
    """

    name = f"{NAMESPACE}.refine_prompt"
    title = "Refine Prompt"
    description = (
        "Refine a prompt template. The input is a stringified JSON prompt template (an object with a "
        "'messages' list of {role, content}, optionally template_format, input_keys and llm_config), with "
        "optional guidelines and context. The output is the refined messages, with the same count, the same "
        "roles in the same order and the same {{variable}} tokens, and a summary of what changed."
    )
    input_schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["prompt_template_json"],
        "properties": {
            "prompt_template_json": {
                "type": "string",
                "minLength": 1,
                "maxLength": TEMPLATE_MAX_CHARS,
                "description": "The prompt template as a JSON string: {\"messages\": [{\"role\", \"content\"}], ...}.",
            },
            "guidelines": {
                "type": "string",
                "maxLength": TEXT_MAX_CHARS,
                "description": "What to improve (for example 'make it shorter').",
            },
            "context": {
                "type": "string",
                "maxLength": TEXT_MAX_CHARS,
                "description": "Background on how the prompt is used.",
            },
        },
    }
    output_schema = OUTPUT_SCHEMA
    read_only = True  # it only answers (each call is recorded, nothing else changes)
    destructive = False
    open_world = True  # an upstream LLM answers

    def check_arguments(self, arguments: dict[str, Any], problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
        field = "arguments.prompt_template_json"
        if any(where == field for where, _ in problems):
            return []  # missing, not a string, empty or too long: already reported
        _, template_problems = parse_template(arguments["prompt_template_json"], field=field)
        return template_problems

    def run(self, arguments: dict[str, Any], *, request_id: str) -> ToolResult:
        provider = get_provider()
        if provider is None:  # the service checks the configuration first; keep this honest anyway
            return ToolResult(text="No AI provider is configured.", is_error=True, error_code="ai_services_disabled")
        template, _ = parse_template(arguments["prompt_template_json"], field="arguments.prompt_template_json")
        try:
            answer = provider.refine_prompt(
                prompt_template_json=arguments["prompt_template_json"],
                guidelines=arguments.get("guidelines", ""),
                context=arguments.get("context", ""),
                request_id=request_id,
            )
        except UpstreamError as exc:
            return ToolResult(
                text=exc.message, is_error=True, trace_id=exc.trace_id, provider=provider.name, error_code=exc.code
            )
        try:
            refinement = check_refinement(template["messages"], answer.output)
        except RefinementRejected as exc:
            return ToolResult(
                text="The refined template was rejected: " + " ".join(exc.problems),
                is_error=True,
                trace_id=answer.trace_id,
                tokens=answer.tokens,
                provider=provider.name,
                error_code="invalid_refinement",
            )
        summary = refinement.summary or DEFAULT_SUMMARY
        return ToolResult(
            text=summary,
            structured={"messages": refinement.messages, "summary": summary},
            trace_id=answer.trace_id,
            tokens=answer.tokens,
            provider=provider.name,
        )
