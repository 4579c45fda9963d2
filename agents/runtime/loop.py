"""The agent loop: an agent runs its template as a tool-calling loop over the platform's own tools.

This is the OpenAI function-calling loop (as in the OpenAI Agents SDK, or LangGraph's prebuilt ReAct
agent). Each iteration is one metered LLM call with the template's instructions and tools; the tool
calls in the answer run in order and their results go back as ``tool`` messages; an answer without
tool calls ends the run (``succeeded``, ``result = {"message": ...}``). At most ``runner.max_steps``
LLM calls (default ``AGENT_RUN_MAX_STEPS``), else the run fails with ``max_steps_exceeded``.

Tools come from the template's ``tools`` entries: ``{"type": "platform", "op"}`` (the registry's
platform tools), and the client tools ``request_input`` / ``request_connection`` (inline, or embeds
of ``__sx__request_input`` / ``__sx__request_connection``). Other entries (code and reference tools,
other embeds) are not offered; the run's first step lists them.

Permissions (the template's entry ``permission``, else ``runner.permissions.default``, default
``allow_reads``: reads ``allow``, writes ``ask``):

- ``allow``: the tool runs (``agents.runtime.tools.registry.call_tool``) with the agent's authority;
- ``deny``: the model is told ``denied_by_policy``;
- ``ask``: the run waits for a person (``AgentRunRequest`` of kind ``approval``; agent and run
  ``waiting``, the worker freed). Approved, the call runs once when the run continues; denied, the
  model is told the person's refusal.

The client tool ``request_input`` (an MCP elicitation) and ``request_connection`` wait for a person the
same way; the answer becomes the tool result. A failing tool call (bad arguments, not found, refused by
the guard) goes back to the model as an error result it can act on; it never fails the run.

The checkpoint is incremental: the run's first messages are saved once (``ctx.save_checkpoint``), and every
later message travels in the step that added it (``AgentRunStep.message``: the model's answer in its
``llm_call`` step, a tool result in its ``tool_call`` step), so a paused, waiting or re-queued run rebuilds the
conversation, the LLM calls made and the tool calls still to run from its steps and continues where it stopped;
a write tool's effect and its step commit together, so a crash never runs one twice. Tool arguments the database
could not hold (NUL characters, NaN, integers past 64 bits) are an ``invalid_arguments`` error to the model.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..choices import RunRequestKind, RunRequestStatus, StepKind
from ..models import RESERVED_SLUG_PREFIX, AgentInstance, AgentRunRequest, AgentRunStep
from ..registry import BaseAgent
from . import services, telemetry
from .context import RunContext
from .exceptions import RunFailure, RunInterrupted
from .tools.client import REQUEST_CONNECTION, REQUEST_INPUT, requested_schema_errors
from .tools.registry import (
    KIND_CLIENT,
    PERMISSIONS,
    Tool,
    ToolResult,
    call_tool,
    check_call,
    tool_registry,
    unstorable_arguments,
)

#: Characters of a tool result the model reads; a longer result is cut and says so.
TOOL_RESULT_MAX_CHARS = 16_000
#: ``llm`` keys (or ``llm.extras`` keys; ``llm``'s own win) passed to the chat-completions request. ``tool_choice``
#: (``auto``, ``required``, ``none``) and ``max_tokens`` override ``AGENT_LLM_TOOL_CHOICE`` / ``AGENT_LLM_MAX_TOKENS``.
LLM_PARAMS = ("temperature", "top_p", "max_tokens", "tool_choice", "seed", "stop", "presence_penalty",
              "frequency_penalty")
_REQUEST_KINDS = {REQUEST_INPUT: RunRequestKind.INPUT, REQUEST_CONNECTION: RunRequestKind.CONNECTION}


@dataclass(frozen=True)
class Wait:
    """A tool call that needs a person: what to ask (``services.run_wait``'s arguments)."""

    kind: str
    tool_name: str
    arguments: Any
    message: str = ""
    requested_schema: dict[str, Any] | None = None
    existing: AgentRunRequest | None = None


@dataclass(frozen=True)
class OfferedTool:
    """A tool the loop offers the model, with the permission the template gives it."""

    tool: Tool
    permission: str


def _embed_slug(entry: dict[str, Any]) -> str | None:
    try:
        slug = entry["@ag.embed"]["@ag.references"]["workflow"]["slug"]
    except (KeyError, TypeError):
        return None
    return slug if isinstance(slug, str) else None


def offered_tools(template: dict[str, Any]) -> tuple[list[OfferedTool], list[str]]:
    """The tools a template offers and their permissions, and a note for each entry the loop cannot offer.

    Returns ``(offered, skipped)``; ``offered`` keeps the template's order (the first entry of a name wins).
    """
    runner = template.get("runner") if isinstance(template.get("runner"), dict) else {}
    default = ((runner.get("permissions") or {}).get("default")) or "allow_reads"
    offered: dict[str, OfferedTool] = {}
    skipped: list[str] = []
    for entry in template.get("tools") or []:
        if not isinstance(entry, dict):
            continue
        slug = _embed_slug(entry)
        if entry.get("type") == "platform":
            name = entry.get("op")
        elif entry.get("type") == "client":
            name = entry.get("name")
        elif slug and slug.startswith(RESERVED_SLUG_PREFIX):
            name = slug.removeprefix(RESERVED_SLUG_PREFIX)
        else:
            skipped.append(f"{slug or entry.get('name') or entry.get('type')}: not a tool the agent loop runs")
            continue
        tool = tool_registry.get(name) if isinstance(name, str) else None
        if tool is None or (entry.get("type") == "client" and tool.kind != KIND_CLIENT):
            skipped.append(f"{name}: no such platform or client tool")
            continue
        permission = entry.get("permission")
        if permission not in PERMISSIONS:
            permission = tool.default_permission if default == "allow_reads" else default
        offered.setdefault(tool.name, OfferedTool(tool, permission))
    return list(offered.values()), skipped


def _skill_text(skill: Any) -> str | None:
    if isinstance(skill, dict) and isinstance(skill.get("content"), str) and "@ag.embed" not in skill:
        heading = skill.get("name") or "skill"
        description = f"\n{skill['description']}\n" if skill.get("description") else ""
        return f"## Skill: {heading}{description}\n{skill['content']}"
    return None


def system_prompt(ctx: RunContext) -> str:
    """The system message: the template's ``instructions.agents_md``, its inline skills, and who and where the
    agent is (the ids its tools take)."""
    template = ctx.template
    instructions = (template.get("instructions") or {}).get("agents_md") or ""
    skills = [text for text in map(_skill_text, template.get("skills") or []) if text]
    agent, project = ctx.agent, ctx.agent.project
    where = (
        f"You are the agent '{agent.name}' (id {agent.pk}, type '{agent.agent_type.slug}') in the project "
        f"'{project.name}' (id {project.pk}). Tools that take a project_id default to this project. "
        "Call tools when they help; answer without a tool call when you are done."
    )
    return "\n\n".join(part for part in (instructions.strip(), *skills, where) if part)


def user_prompt(ctx: RunContext) -> str:
    """The user message: the instruction, and the issue's title and description."""
    parts = [ctx.instruction.strip()] if ctx.instruction.strip() else []
    if ctx.issue is not None:
        parts.append(f"Issue {ctx.issue.pk}: {ctx.issue.title}\n\n{ctx.issue.body}".strip())
    return "\n\n".join(parts)


def _params(template: dict[str, Any]) -> dict[str, Any]:
    llm = template.get("llm") if isinstance(template.get("llm"), dict) else {}
    extras = llm.get("extras") if isinstance(llm.get("extras"), dict) else {}
    return {key: source[key] for source in (extras, llm) for key in LLM_PARAMS if key in source}


def max_steps(template: dict[str, Any]) -> int:
    """``runner.max_steps`` of the template (LLM calls), else ``AGENT_RUN_MAX_STEPS``."""
    runner = template.get("runner") if isinstance(template.get("runner"), dict) else {}
    value = runner.get("max_steps")
    valid = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return value if valid else settings.AGENT_RUN_MAX_STEPS


def _error(code: str, message: str) -> ToolResult:
    return ToolResult.error(code, message)


class ToolLoop:
    """One execution of the loop for one run (see the module docstring)."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.offered, self.skipped = offered_tools(ctx.template)
        self.by_name = {o.tool.name: o for o in self.offered}
        self.max_steps = max_steps(ctx.template)

    def run(self) -> dict[str, Any]:
        state = self._restore()
        if state is None:
            messages = [{"role": "system", "content": system_prompt(self.ctx)},
                        {"role": "user", "content": user_prompt(self.ctx) or "Do your task."}]
            self.ctx.record_step(StepKind.MESSAGE, name="start", input={
                "system": messages[0]["content"], "user": messages[1]["content"],
                "tools": {o.tool.name: o.permission for o in self.offered}, "not_offered": self.skipped,
                "max_steps": self.max_steps,
            })
            self.ctx.save_checkpoint({"messages": messages, "from_steps": 0, "llm_calls": 0})
            state = {"messages": list(messages), "llm_calls": 0, "pending": []}
        tools = [o.tool.openai_function() for o in self.offered]
        while True:
            while state["pending"]:
                self._run_pending(state)
            if state["llm_calls"] >= self.max_steps:
                raise RunFailure("max_steps_exceeded",
                                 f"The agent made {state['llm_calls']} LLM calls without finishing (max_steps is "
                                 f"{self.max_steps}: runner.max_steps or AGENT_RUN_MAX_STEPS).")
            completion = self.ctx.llm.chat(state["messages"], tools=tools, **_params(self.ctx.template))
            state["llm_calls"] += 1
            state["messages"].append(completion.message)
            state["pending"] = completion.tool_calls
            if not completion.tool_calls:
                return {"message": completion.content}

    def _restore(self) -> dict[str, Any] | None:
        """The loop's state when the run continues (``None`` on its first start): ``{"messages", "llm_calls",
        "pending"}``.

        The checkpoint holds the first messages (``messages``), the index of the step from which the run's steps
        carry the rest (``from_steps``) and the LLM calls made before it (``llm_calls``); the conversation is those
        messages followed by each later step's ``message``, in order, so no step ever rewrites it. A checkpoint of
        the whole conversation (``pending`` in it, as runs wrote before) is converted once.
        """
        checkpoint = self.ctx.checkpoint
        if not isinstance(checkpoint, dict):
            return None
        if "from_steps" not in checkpoint:
            checkpoint = {"messages": checkpoint.get("messages") or [], "from_steps": self.ctx.run.steps_completed,
                          "llm_calls": checkpoint.get("llm_calls", 0)}
            self.ctx.save_checkpoint(checkpoint)
        added = list(AgentRunStep.objects.filter(
            run_id=self.ctx.run.pk, index__gte=checkpoint["from_steps"], message__isnull=False,
        ).order_by("index").values_list("message", flat=True))
        messages = [*checkpoint["messages"], *added]
        last = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "assistant"), None)
        answered = {m.get("tool_call_id") for m in messages[last + 1:]} if last is not None else set()
        pending = [c for c in messages[last].get("tool_calls") or [] if c.get("id") not in answered] if (
            last is not None) else []
        llm_calls = checkpoint["llm_calls"] + sum(1 for m in added if m.get("role") == "assistant")
        return {"messages": messages, "llm_calls": llm_calls, "pending": pending}

    # --- One tool call ---

    def _needs_lock(self, name: str) -> bool:
        """Whether a call of ``name`` may touch more than reads: a write (its effect and its step commit together,
        so a crash never runs it twice) or a call a person answers (the agent row is locked first, as the services
        that decide or answer a request lock it)."""
        offered = self.by_name.get(name)
        if offered is None or offered.permission == "deny":
            return False
        return offered.permission == "ask" or offered.tool.kind == KIND_CLIENT or not offered.tool.read_only

    def _run_pending(self, state: dict[str, Any]) -> None:
        """Run the first pending tool call and record it (its step carries the ``tool`` message the model reads).

        A read-only call runs on its own (its savepoint is the tool's transaction) and is recorded by one statement;
        any other runs with the agent row locked, it and its step in one transaction.

        Raises ``RunInterrupted(WAITING)`` after putting the run in ``waiting`` when the call needs a person.
        """
        self.ctx.stop_if_requested()
        call = state["pending"][0]
        started = time.monotonic()
        if not self._needs_lock(call["function"]["name"]):
            name, arguments, result, permission = self._outcome(call)
            self._record(call, state, name, arguments, result, permission, started)
            return
        with transaction.atomic():
            # The agent row first, as the services that decide or answer a request lock it (agent, run, request),
            # so a person deciding while this call runs waits for it instead of deadlocking with it.
            AgentInstance.objects.select_for_update().filter(pk=self.ctx.agent.pk).values_list("pk").first()
            name, arguments, result, permission = self._outcome(call)
            if isinstance(result, Wait):
                wait = result
            else:
                wait = None
                self._record(call, state, name, arguments, result, permission, started)
        if wait is not None:
            services.run_wait(
                self.ctx.run, tool_call_id=call["id"], kind=wait.kind, tool_name=wait.tool_name,
                arguments=wait.arguments, message=wait.message, requested_schema=wait.requested_schema,
                existing=wait.existing,
            )
            raise RunInterrupted(RunInterrupted.WAITING)

    def _record(self, call, state, name, arguments, result: ToolResult, permission: str, started: float) -> None:
        text = result.text()
        if len(text) > TOOL_RESULT_MAX_CHARS:
            text = text[:TOOL_RESULT_MAX_CHARS] + f"... [cut: the result had {len(result.text())} characters]"
        message = {"role": "tool", "tool_call_id": call["id"], "content": text}
        self.ctx.record_step(
            StepKind.TOOL_CALL, name=name, message=message,
            input={"tool_call_id": call["id"], "arguments": arguments, "permission": permission},
            output=result.structured, error=result.structured["error"] if result.is_error else None,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        state["messages"].append(message)
        state["pending"].pop(0)

    @telemetry.tool_call
    def _outcome(self, call: dict[str, Any]) -> tuple[str, Any, ToolResult | Wait, str]:
        """``(tool name, arguments, result, permission)`` of one call; the result is a ``Wait`` when a person
        must answer first."""
        name = call["function"]["name"]
        raw = call["function"].get("arguments") or "{}"
        try:
            arguments = json.loads(raw)
        except ValueError:
            return name, raw, _error("invalid_arguments", "The arguments are not valid JSON."), ""
        unstorable = unstorable_arguments(arguments)
        if unstorable:
            return name, raw, _error("invalid_arguments", unstorable), ""
        offered = self.by_name.get(name)
        if offered is None:
            known = ", ".join(self.by_name) or "none"
            return name, arguments, _error("unknown_tool", f"No tool '{name}' is offered. Tools: {known}."), ""
        tool, permission = offered.tool, offered.permission
        arguments = tool.from_model(arguments)
        problems = tool.validate_arguments(arguments)
        if problems:
            text = "; ".join(f"{path}: {message}" for path, message in problems)
            return name, arguments, _error("invalid_arguments", f"Invalid arguments. {text}"), permission
        if permission == "deny":
            return name, arguments, _error("denied_by_policy", f"'{name}' is denied by policy."), permission
        if tool.kind == KIND_CLIENT:
            return name, arguments, self._ask_person(call, tool, arguments), permission
        if permission == "ask":
            return name, arguments, self._approved(call, tool, arguments), permission
        return name, arguments, call_tool(tool, self.ctx.tool_call, arguments), permission

    def _request(self, call: dict[str, Any]) -> AgentRunRequest | None:
        return AgentRunRequest.objects.select_for_update().filter(
            run_id=self.ctx.run.pk, tool_call_id=call["id"]
        ).order_by("-requested_at").first()

    def _approved(self, call: dict[str, Any], tool: Tool, arguments: dict) -> ToolResult | Wait:
        """A call with permission ``ask``: checked first (``check_call``: arguments, referenced ids, the lifecycle
        now), so nobody is asked to approve a call that cannot succeed — it goes back to the model as the error it
        would end in; then a person approves or denies it; approved, it runs once (checked again as it runs)."""
        request = self._request(call)
        if request is None:
            refused = check_call(tool, self.ctx.tool_call, arguments)
            if refused is not None:
                return refused
        if request is None or request.status == RunRequestStatus.PENDING:
            return Wait(RunRequestKind.APPROVAL, tool.name, arguments, f"Allow '{tool.name}'?", existing=request)
        if request.status != RunRequestStatus.APPROVED:
            why = f": {request.reason}" if request.reason else ""
            return _error("denied_by_person", f"A person denied '{tool.name}'{why}.")
        if request.executed_at is None:
            result = call_tool(tool, self.ctx.tool_call, arguments)
            request.executed_at, request.result = timezone.now(), result.as_mcp()
            request.save(update_fields=["executed_at", "result"])
        return ToolResult(request.result["structuredContent"], is_error=request.result["isError"])

    def _ask_person(self, call: dict[str, Any], tool: Tool, arguments: dict) -> ToolResult | Wait:
        kind = _REQUEST_KINDS[tool.name]
        schema = arguments.get("requestedSchema") if kind == RunRequestKind.INPUT else None
        if kind == RunRequestKind.INPUT:
            problems = requested_schema_errors(schema)
            if problems:
                message = "requestedSchema is not an MCP elicitation schema: " + " ".join(problems)
                return _error("invalid_arguments", message)
        request = self._request(call)
        if request is None or request.status == RunRequestStatus.PENDING:
            message = arguments.get("message") or f"Connect {arguments.get('integration')}."
            return Wait(kind, tool.name, arguments, message, requested_schema=schema, existing=request)
        if request.status == RunRequestStatus.CANCELLED:
            return ToolResult({"action": "cancel"})
        return ToolResult(request.response or {"action": "decline"})


class ToolLoopAgent(BaseAgent):
    """The default agent: runs its template as the tool-calling loop (``ToolLoop``).

    An agent type without an agent class runs its agents with this; an agent class gets the loop by
    subclassing it (the built-ins do) and may ship a default ``template`` (``sync_agent_types`` commits it as
    the type's first revision).
    """

    slug = "tool-loop"
    name = "Tool-calling loop"
    description = "Runs the agent's template as a tool-calling loop over the platform's tools."
    #: The class's own template (``parameters.agent``), used when an agent has none recorded.
    template: ClassVar[dict[str, Any] | None] = None

    def run(self, ctx: RunContext) -> dict[str, Any]:
        """Run the loop; returns ``{"message": <the model's final answer>}``."""
        return ToolLoop(ctx).run()
