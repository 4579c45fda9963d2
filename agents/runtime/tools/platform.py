"""The platform tools of the agents and projects apps: query and steer agents, read and write shared
contexts, create and update issues, start runs, read them and decide their approvals. Each runs through
the same services as the API, with its caller's authority (``registry.ToolCall``): ids outside the
caller's reach are "not found", writes need write access to the project (``ToolCall.check_write``), and
``project_id`` defaults to an agent's own project.

``register_platform_tools(registry)`` adds them (``AgentsConfig.ready``).
"""

from __future__ import annotations

import uuid
from typing import Any

from projects import services as project_services
from projects.choices import IssueStatus
from projects.models import Issue, Project
from syndarix.api.filters import IdOrSlugFilter
from syndarix.exceptions import InvalidInput, NotFound, PermissionDenied

from ... import services
from ...choices import AgentStatus, RunRequestKind, RunRequestStatus, RunStatus, TerminationReason
from ...contexts import services as contexts
from ...exceptions import ContextNotFound
from ...models import AgentContext, AgentInstance, AgentRun, AgentRunRequest
from ...selectors import agent_type_by_id_or_slug
from .. import services as runtime
from .registry import Tool, ToolCall, ToolRegistry

_UUID = {"type": "string", "format": "uuid"}
_PROJECT = {**_UUID, "description": "A project in your reach (an agent's default: its own project)."}
_LIMIT = {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}
_REASON = {"type": "string", "maxLength": 2000, "description": "Why, for the ledger."}
_CONTEXT_NAME = {"type": "string", "minLength": 1, "maxLength": 200,
                 "description": "The name of one of the project's shared contexts (or give context_id instead)."}


def _object(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties, "additionalProperties": False, **extra}
    if required:
        schema["required"] = required
    return schema


def _choice(values: list[str], **extra: Any) -> dict[str, Any]:
    """A string enum (typed: some servers refuse an untyped ``enum``)."""
    return {"type": "string", "enum": values, **extra}


#: A context is named by ``context_id`` or by ``name``: the schema says so (MCP clients validate it; the model is
#: offered it as two complete alternatives, ``registry.model_schema``).
_CONTEXT_ID_OR_NAME = {"anyOf": [{"required": ["context_id"]}, {"required": ["name"]}]}
_CONTEXT_ID = {**_UUID, "description": "The context's id (or give its name instead)."}


_AGENT_OUT = _object({
    "id": _UUID, "name": {"type": "string"}, "status": {"enum": list(AgentStatus.values)},
    "agent_type": {"type": "string"}, "project_id": _UUID, "current_task": {"type": "string"},
    "tokens_used": {"type": "integer"}, "cost_incurred": {"type": "string"}, "last_error": {"type": "string"},
})
_ISSUE_OUT = _object({
    "id": _UUID, "project_id": _UUID, "title": {"type": "string"}, "body": {"type": "string"},
    "status": {"enum": list(IssueStatus.values)}, "assigned_agent_id": {"type": ["string", "null"]},
})
_RUN_OUT = _object({
    "id": _UUID, "agent_id": _UUID, "status": {"enum": list(RunStatus.values)}, "instruction": {"type": "string"},
    "issue_id": {"type": ["string", "null"]}, "result": {"description": "What the agent returned (any JSON)."},
    "error_code": {"type": "string"}, "error_message": {"type": "string"}, "steps_completed": {"type": "integer"},
    "tokens_used": {"type": "integer"}, "cost": {"type": "string"},
    "pending_approvals": {"type": "array", "items": _object({
        "id": _UUID, "tool_name": {"type": "string"}, "arguments": {"type": "object"},
        "requested_at": {"type": "string"},
    })},
})
_CONTEXT_OUT = _object({
    "id": _UUID, "project_id": _UUID, "name": {"type": "string"}, "version": {"type": "integer"},
    "current_version": {"type": "integer"}, "data": {"type": "object"},
})


# --- Lookups inside the caller's reach ----------------------------------------------------------------


def _project(call: ToolCall, project_id: str | None, *, write: bool = False) -> Project:
    """The caller's default project (``project_id`` ``None``) or a project in its reach; else ``NotFound``.

    With ``write``, raises ``PermissionDenied`` when the caller may only read it.
    """
    if project_id is None:
        project = call.project
    else:
        project = call.projects().filter(pk=_uuid(project_id, "project_id")).first()
        if project is None:
            raise NotFound("Project not found.", field="project_id")
    if write:
        call.check_write(project)
    return project


def _uuid(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"No such {field.removesuffix('_id')}: '{value}' is not an id.", field=field) from None


def _agent(call: ToolCall, agent_id: str, *, write: bool = False) -> AgentInstance:
    agent = AgentInstance.objects.select_related("project__workspace", "agent_type").filter(
        pk=_uuid(agent_id, "agent_id"), project__in=call.projects()
    ).first()
    if agent is None:
        raise NotFound("Agent not found.", field="agent_id")
    if write:
        call.check_write(agent.project)
    return agent


def _context(call: ToolCall, *, project_id: str | None, context_id: str | None, name: str | None,
             write: bool = False) -> AgentContext:
    project = _project(call, project_id, write=write)
    if context_id is not None:
        found = AgentContext.objects.filter(pk=_uuid(context_id, "context_id"), project=project).first()
    elif name is not None:
        found = AgentContext.objects.filter(project=project, instance__isnull=True, name=name).first()
    else:
        raise NotFound("Name the context: send context_id or name.", field="name")
    if found is None:
        raise ContextNotFound()
    return found


def _as_agent(agent: AgentInstance) -> dict[str, Any]:
    return {
        "id": str(agent.pk), "name": agent.name, "status": agent.status, "agent_type": agent.agent_type.slug,
        "project_id": str(agent.project_id), "current_task": agent.current_task, "tokens_used": agent.tokens_used,
        "cost_incurred": str(agent.cost_incurred), "last_error": agent.last_error,
    }


def _as_issue(issue: Issue) -> dict[str, Any]:
    return {
        "id": str(issue.pk), "project_id": str(issue.project_id), "title": issue.title, "body": issue.body,
        "status": issue.status, "assigned_agent_id": str(issue.assigned_agent_id) if issue.assigned_agent_id else None,
    }


def _reason(call: ToolCall, reason: str) -> str:
    return reason or f"by {call.label} (platform tool)"


# --- Agents -------------------------------------------------------------------------------------------


def query_agents(call: ToolCall, *, project_id: str | None = None, status: list[str] | None = None,
                 agent_type: str | None = None, q: str | None = None, limit: int = 20) -> dict[str, Any]:
    queryset = AgentInstance.objects.select_related("agent_type").filter(
        project=_project(call, project_id), is_playground=False
    )
    if status:
        queryset = queryset.filter(status__in=status)
    if agent_type:
        queryset = IdOrSlugFilter(field_name="agent_type").filter(queryset, agent_type)
    if q:
        queryset = queryset.filter(name__icontains=q)
    rows = list(queryset.order_by("-created_at")[: limit + 1])
    return {"agents": [_as_agent(a) for a in rows[:limit]], "truncated": len(rows) > limit}


def spawn_agent(call: ToolCall, *, agent_type: str, name: str, project_id: str | None = None,
                config: dict | None = None, current_task: str = "") -> dict[str, Any]:
    found = agent_type_by_id_or_slug(agent_type)
    if found is None:
        raise NotFound("Agent type not found.", field="agent_type")
    agent = services.agent_spawn(
        project=_project(call, project_id, write=True), agent_type=found, name=name, config=config or {},
        current_task=current_task, **call.ledger,
    )
    return _as_agent(agent)


def pause_agent(call: ToolCall, *, agent_id: str, reason: str = "") -> dict[str, Any]:
    agent = services.agent_pause(_agent(call, agent_id, write=True), reason=_reason(call, reason), **call.ledger)
    return _as_agent(agent)


def resume_agent(call: ToolCall, *, agent_id: str, reason: str = "") -> dict[str, Any]:
    agent = services.agent_resume(_agent(call, agent_id, write=True), reason=_reason(call, reason), **call.ledger)
    return _as_agent(agent)


def terminate_agent(call: ToolCall, *, agent_id: str, reason: str = "") -> dict[str, Any]:
    agent = services.agent_terminate(
        _agent(call, agent_id, write=True), reason=_reason(call, reason), termination_reason=TerminationReason.USER,
        **call.ledger,
    )
    return _as_agent(agent)


# --- Runs ---------------------------------------------------------------------------------------------


def _run(call: ToolCall, run_id: str, *, write: bool = False) -> AgentRun:
    run = AgentRun.objects.select_related("agent__project__workspace").filter(
        pk=_uuid(run_id, "run_id"), agent__project__in=call.projects()
    ).first()
    if run is None:
        raise NotFound("Run not found.", field="run_id")
    if write:
        call.check_write(run.agent.project)
    return run


def _as_run(run: AgentRun) -> dict[str, Any]:
    approvals = run.requests.filter(kind=RunRequestKind.APPROVAL, status=RunRequestStatus.PENDING)
    return {
        "id": str(run.pk), "agent_id": str(run.agent_id), "status": run.status, "instruction": run.instruction,
        "issue_id": str(run.issue_id) if run.issue_id else None, "result": run.result, "error_code": run.error_code,
        "error_message": run.error_message, "steps_completed": run.steps_completed, "tokens_used": run.tokens_used,
        "cost": f"{run.cost:.6f}",  # USD, as the API writes it
        "pending_approvals": [
            {"id": str(approval.pk), "tool_name": approval.tool_name, "arguments": approval.arguments,
             "requested_at": approval.requested_at.isoformat()}
            for approval in approvals.order_by("requested_at")
        ],
    }


def start_run(call: ToolCall, *, agent_id: str, instruction: str = "", issue_id: str | None = None) -> dict[str, Any]:
    agent = _agent(call, agent_id, write=True)
    issue = None
    if issue_id is not None:
        issue = Issue.objects.filter(pk=_uuid(issue_id, "issue_id"), project_id=agent.project_id).first()
        if issue is None:
            raise NotFound("No such issue in the agent's project.", field="issue_id")
    run, _ = runtime.run_create(agent=agent, instruction=instruction, issue=issue, actor=call.user)
    return _as_run(run)


def read_run(call: ToolCall, *, run_id: str) -> dict[str, Any]:
    return _as_run(_run(call, run_id))


def decide_approval(call: ToolCall, *, run_id: str, approval_id: str, decision: str,
                    reason: str = "") -> dict[str, Any]:
    if call.user is None:  # the point of an approval is that a person decides it
        raise PermissionDenied("Approvals are decided by people, not by agents.")
    run = _run(call, run_id, write=True)
    approval = AgentRunRequest.objects.filter(
        pk=_uuid(approval_id, "approval_id"), run=run, kind=RunRequestKind.APPROVAL
    ).first()
    if approval is None:
        raise NotFound("No such approval in this run.", field="approval_id")
    runtime.run_request_decide(approval, decision=decision, reason=reason, actor=call.user)
    return _as_run(AgentRun.objects.get(pk=run.pk))


# --- Shared contexts ----------------------------------------------------------------------------------


def list_contexts(call: ToolCall, *, project_id: str | None = None, q: str | None = None,
                  limit: int = 20) -> dict[str, Any]:
    queryset = AgentContext.objects.filter(project=_project(call, project_id)).order_by("name")
    if q:
        queryset = queryset.filter(name__icontains=q)
    rows = list(queryset[: limit + 1])
    return {
        "contexts": [
            {"id": str(c.pk), "name": c.name, "current_version": c.current_version,
             "agent_id": str(c.instance_id) if c.instance_id else None}
            for c in rows[:limit]
        ],
        "truncated": len(rows) > limit,
    }


def read_context(call: ToolCall, *, project_id: str | None = None, context_id: str | None = None,
                 name: str | None = None, version: int | None = None) -> dict[str, Any]:
    row = None
    if version is None and (context_id is not None or name is not None):  # the usual read: one query
        project = _project(call, project_id)
        ident = _uuid(context_id, "context_id") if context_id is not None else None
        row = contexts.context_current(project, name=name, context_id=ident)
    if row is None:
        row = contexts.context_read(_context(call, project_id=project_id, context_id=context_id, name=name), version)
    context = row.context
    return {"id": str(context.pk), "project_id": str(context.project_id), "name": context.name,
            "version": row.version, "current_version": context.current_version, "data": row.data}


def write_context(call: ToolCall, *, data: dict, project_id: str | None = None, context_id: str | None = None,
                  name: str | None = None, mode: str = "replace", change_description: str = "",
                  expected_version: int | None = None) -> dict[str, Any]:
    if context_id is None and name is not None:
        context, _ = contexts.context_get_or_create(
            project=_project(call, project_id, write=True), name=name, actor=call.actor
        )
    else:
        context = _context(call, project_id=project_id, context_id=context_id, name=name, write=True)
    version = contexts.context_write(
        context, data, actor=call.actor, mode=mode, expected_version=expected_version,
        change_description=change_description or f"Written by {call.label}",
    )
    return {"id": str(context.pk), "project_id": str(context.project_id), "name": context.name,
            "version": version.version, "current_version": version.version, "data": version.data}


# --- Issues -------------------------------------------------------------------------------------------


def query_issues(call: ToolCall, *, project_id: str | None = None, status: list[str] | None = None,
                 q: str | None = None, assigned_to_me: bool = False, limit: int = 20) -> dict[str, Any]:
    queryset = Issue.objects.filter(project=_project(call, project_id))
    if status:
        queryset = queryset.filter(status__in=status)
    if q:
        queryset = queryset.filter(title__icontains=q)
    if assigned_to_me:
        if call.agent is None:
            raise InvalidInput("assigned_to_me is for agents; filter by status or q instead.", field="assigned_to_me")
        queryset = queryset.filter(assigned_agent=call.agent)
    rows = list(queryset.order_by("-created_at")[: limit + 1])
    return {"issues": [_as_issue(i) for i in rows[:limit]], "truncated": len(rows) > limit}


def _issue(call: ToolCall, issue_id: str, *, write: bool = False) -> Issue:
    issue = Issue.objects.select_related("project__workspace").filter(
        pk=_uuid(issue_id, "issue_id"), project__in=call.projects()
    ).first()
    if issue is None:
        raise NotFound("Issue not found.", field="issue_id")
    if write:
        call.check_write(issue.project)
    return issue


def _assignee(issue_project_id, agent_id: str | None) -> AgentInstance | None:
    if agent_id is None:
        return None
    agent = AgentInstance.objects.live().filter(pk=_uuid(agent_id, "assigned_agent_id"),
                                                project_id=issue_project_id).first()
    if agent is None:
        raise NotFound("Issues can only be assigned to a live agent of the same project.", field="assigned_agent_id")
    return agent


def create_issue(call: ToolCall, *, title: str, body: str = "", project_id: str | None = None,
                 assigned_agent_id: str | None = None) -> dict[str, Any]:
    project = _project(call, project_id, write=True)
    issue = project_services.issue_create(
        project=project, title=title, body=body, assigned_agent=_assignee(project.pk, assigned_agent_id)
    )
    return _as_issue(issue)


_UNSET = object()


def update_issue(call: ToolCall, *, issue_id: str, title: str | None = None, body: str | None = None,
                 status: str | None = None, assigned_agent_id: Any = _UNSET) -> dict[str, Any]:
    issue = _issue(call, issue_id, write=True)
    data: dict[str, Any] = {k: v for k, v in (("title", title), ("body", body), ("status", status)) if v is not None}
    if assigned_agent_id is not _UNSET:
        data["assigned_agent"] = _assignee(issue.project_id, assigned_agent_id)
    return _as_issue(project_services.issue_update(issue, data=data))


# --- Declarations -------------------------------------------------------------------------------------

PLATFORM_TOOLS = (
    Tool(
        name="query_agents", title="Query agents",
        description="List a project's agents, newest first, filtered by status, agent type (id or slug) or name.",
        input_schema=_object({
            "project_id": _PROJECT,
            "status": {"type": "array", "items": _choice(list(AgentStatus.values))},
            "agent_type": {"type": "string", "description": "Agent type id or slug."},
            "q": {"type": "string", "maxLength": 200, "description": "Text in the agent's name."},
            "limit": _LIMIT,
        }),
        output_schema=_object({"agents": {"type": "array", "items": _AGENT_OUT}, "truncated": {"type": "boolean"}}),
        handler=query_agents, read_only=True, idempotent=True, in_build_kit=True,
        route=("GET", "/api/v1/projects/{project_id}/agents"),
    ),
    Tool(
        name="list_contexts", title="List contexts",
        description="List a project's shared contexts (name, id, current version).",
        input_schema=_object({"project_id": _PROJECT, "q": {"type": "string", "maxLength": 200}, "limit": _LIMIT}),
        output_schema=_object({"contexts": {"type": "array"}, "truncated": {"type": "boolean"}}),
        handler=list_contexts, read_only=True, idempotent=True,
        route=("GET", "/api/v1/projects/{project_id}/contexts"),
    ),
    Tool(
        name="read_context", title="Read context",
        description=(
            "Read a project's shared context by id or by name: its current data, or the data at a given version."
        ),
        input_schema=_object({
            "project_id": _PROJECT, "context_id": _CONTEXT_ID, "name": _CONTEXT_NAME,
            "version": {"type": "integer", "minimum": 1},
        }, **_CONTEXT_ID_OR_NAME),
        output_schema=_CONTEXT_OUT, handler=read_context, read_only=True, idempotent=True, in_build_kit=True,
        route=("GET", "/api/v1/projects/{project_id}/contexts/{context_id}"),
    ),
    Tool(
        name="write_context", title="Write context",
        description=(
            "Write a new version of a project's shared context (by id, or by name: created when missing), replacing "
            "its data or merging a JSON merge patch (RFC 7396) into it."
        ),
        input_schema=_object(
            {
                "project_id": _PROJECT, "context_id": _CONTEXT_ID,
                "name": {**_CONTEXT_NAME, "description": "The context's name (created when missing), or give "
                                                         "context_id instead."},
                "data": {"type": "object", "description": "The data: the whole new data, or a merge patch."},
                "mode": _choice(["replace", "merge"], default="replace"),
                "change_description": {"type": "string", "maxLength": 2000, "description": "What changed, in a line."},
                "expected_version": {"type": "integer", "minimum": 1},
            },
            ["data"],
            **_CONTEXT_ID_OR_NAME,
        ),
        output_schema=_CONTEXT_OUT, handler=write_context, in_build_kit=True,
        route=("POST", "/api/v1/projects/{project_id}/contexts/{context_id}/write"),
    ),
    Tool(
        name="spawn_agent", title="Spawn agent",
        description="Spawn an idle agent of an agent type (id or slug) into a project.",
        input_schema=_object(
            {
                "project_id": _PROJECT,
                "agent_type": {"type": "string", "minLength": 1, "description": "Agent type id or slug."},
                "name": {"type": "string", "minLength": 1, "maxLength": 200},
                "config": {"type": "object"},
                "current_task": {"type": "string", "maxLength": 10000},
            },
            ["agent_type", "name"],
        ),
        output_schema=_AGENT_OUT, handler=spawn_agent, in_build_kit=True,
        route=("POST", "/api/v1/projects/{project_id}/agents"),
    ),
    Tool(
        name="pause_agent", title="Pause agent",
        description="Pause an agent of your workspace; its running work stops at the next step.",
        input_schema=_object({"agent_id": _UUID, "reason": _REASON}, ["agent_id"]),
        output_schema=_AGENT_OUT, handler=pause_agent, idempotent=True,
        route=("POST", "/api/v1/projects/{project_id}/agents/{agent_id}/pause"),
    ),
    Tool(
        name="resume_agent", title="Resume agent",
        description="Resume a paused agent of your workspace.",
        input_schema=_object({"agent_id": _UUID, "reason": _REASON}, ["agent_id"]),
        output_schema=_AGENT_OUT, handler=resume_agent, idempotent=True,
        route=("POST", "/api/v1/projects/{project_id}/agents/{agent_id}/resume"),
    ),
    Tool(
        name="terminate_agent", title="Terminate agent",
        description="Terminate an agent of your workspace for good; its unfinished runs are cancelled.",
        input_schema=_object({"agent_id": _UUID, "reason": _REASON}, ["agent_id"]),
        output_schema=_AGENT_OUT, handler=terminate_agent, destructive=True,
        route=("DELETE", "/api/v1/projects/{project_id}/agents/{agent_id}"),
    ),
    Tool(
        name="start_run", title="Start run",
        description=(
            "Queue a run of an agent: an instruction, an issue of its project (the agent becomes its assignee), or "
            "both. It starts when the agent is idle and its earlier runs are done; follow it with read_run."
        ),
        input_schema=_object(
            {"agent_id": _UUID, "instruction": {"type": "string", "maxLength": runtime.INSTRUCTION_MAX_LENGTH},
             "issue_id": _UUID},
            ["agent_id"],
        ),
        output_schema=_RUN_OUT, handler=start_run,
        route=("POST", "/api/v1/projects/{project_id}/agents/{agent_id}/runs"),
    ),
    Tool(
        name="read_run", title="Read run",
        description=(
            "Read a run: its status (queued, running, waiting, paused, succeeded, failed, cancelled), its result or "
            "error when finished, its usage, and the approvals it waits for."
        ),
        input_schema=_object({"run_id": _UUID}, ["run_id"]),
        output_schema=_RUN_OUT, handler=read_run, read_only=True, idempotent=True,
        route=("GET", "/api/v1/projects/{project_id}/agents/{agent_id}/runs/{run_id}"),
    ),
    Tool(
        name="decide_approval", title="Decide approval",
        description=(
            "Approve or deny a tool call a waiting run asks approval for (see read_run's pending_approvals); the run "
            "then continues. Only people decide approvals."
        ),
        input_schema=_object(
            {"run_id": _UUID, "approval_id": _UUID, "decision": _choice(["approve", "deny"]), "reason": _REASON},
            ["run_id", "approval_id", "decision"],
        ),
        output_schema=_RUN_OUT, handler=decide_approval,
        route=("POST", "/api/v1/projects/{project_id}/agents/{agent_id}/runs/{run_id}/approvals/{approval_id}"),
    ),
    Tool(
        name="query_issues", title="Query issues",
        description="List a project's issues, newest first, filtered by status, title text or assignment to you.",
        input_schema=_object({
            "project_id": _PROJECT,
            "status": {"type": "array", "items": _choice(list(IssueStatus.values))},
            "q": {"type": "string", "maxLength": 200},
            "assigned_to_me": {"type": "boolean", "default": False},
            "limit": _LIMIT,
        }),
        output_schema=_object({"issues": {"type": "array", "items": _ISSUE_OUT}, "truncated": {"type": "boolean"}}),
        handler=query_issues, read_only=True, idempotent=True,
        route=("GET", "/api/v1/projects/{project_id}/issues"),
    ),
    Tool(
        name="create_issue", title="Create issue",
        description="Create an issue in a project, optionally assigned to a live agent of that project.",
        input_schema=_object(
            {
                "project_id": _PROJECT, "title": {"type": "string", "minLength": 1, "maxLength": 300},
                "body": {"type": "string", "maxLength": 100000}, "assigned_agent_id": _UUID,
            },
            ["title"],
        ),
        output_schema=_ISSUE_OUT, handler=create_issue,
        route=("POST", "/api/v1/projects/{project_id}/issues"),
    ),
    Tool(
        name="update_issue", title="Update issue",
        description="Change an issue's title, body, status or assignee (null to unassign).",
        input_schema=_object(
            {
                "issue_id": _UUID, "title": {"type": "string", "minLength": 1, "maxLength": 300},
                "body": {"type": "string", "maxLength": 100000}, "status": _choice(list(IssueStatus.values)),
                "assigned_agent_id": {"type": ["string", "null"], "format": "uuid",
                                      "description": "The live agent of the issue's project to assign; null "
                                                     "unassigns."},
            },
            ["issue_id"],
        ),
        output_schema=_ISSUE_OUT, handler=update_issue, idempotent=True,
        route=("PATCH", "/api/v1/projects/{project_id}/issues/{issue_id}"),
    ),
)


def register_platform_tools(registry: ToolRegistry) -> None:
    """Add the agents and projects apps' platform tools to ``registry``."""
    for tool in PLATFORM_TOOLS:
        registry.register(tool)
