"""The one registry of the platform's tools: what an agent (and, through the MCP server, any AI client)
may call on Syndarix.

Each ``Tool`` is declared once, in code, with its name, description, input and output JSON Schemas,
MCP annotations (``readOnlyHint``, ``destructiveHint``, ``idempotentHint``; MCP spec, "Tool
annotations"), its default permission and the function that runs it through the services. Platform
tools of the agents and projects apps are declared in ``agents.runtime.tools.platform``; the client tools
the runtime answers by asking a person (``request_input``, ``request_connection``) in
``agents.runtime.tools.client``; apps above agents add their own (the build kit adds ``find_capabilities``
and ``commit_revision`` in ``BuildkitConfig.ready``), so the agents app never imports them. The
build kit's ops catalog and playground overlay, the agent loop and the MCP server all read this
registry.

Two renderings of a tool's arguments: MCP ``tools/list`` publishes the full ``input_schema`` (limits, formats,
nullable types), and the server validates every call against it; the model is offered a compact, portable
rendering (``model_schema``) that every server's tool-call parser and grammar compiler takes — no length or
item limits (llama.cpp turns a ``maxLength`` into grammar rules that grow with it; they are stated in the
description and checked here), typed enums, no ``format``, no type unions, no empty ``required``, and "one of
these fields" rules as complete alternatives (``anyOf``) beside the plain ``properties`` Ollama reads.

A tool runs with the authority of its caller (``ToolCall``): an agent's (inside the agent's workspace,
where any other workspace's id reads as "not found"; ledger rows name the agent and its run), or a
person's, through the MCP server (inside the projects they can see, writing only where their role lets
them, exactly as the API; ledger rows name the user). Either way under the same validation, lifecycle
guard and limits as the API. ``call_tool`` turns every refusal into an error result
(``ToolResult.is_error``) the model can act on: it never raises for bad input.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured, ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, OperationalError, transaction
from django.http import Http404
from django_fsm import ConcurrentTransition
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from syndarix.exceptions import STALE_WRITE_MESSAGE, DomainError, InvalidInput, NotFound, PermissionDenied
from syndarix.jsondoc import check_json_document

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from agents.models import AgentInstance, AgentRun
    from projects.models import Project

PERMISSIONS = ("allow", "ask", "deny")
#: PostgreSQL errors a tool call may simply try again after: deadlock_detected, serialization_failure.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
KIND_PLATFORM = "platform"
KIND_CLIENT = "client"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


class ToolError(DomainError):
    """A tool refused or failed; becomes an error result with ``code`` and ``message``."""

    code = "tool_error"
    status_code = 400


@dataclass(frozen=True)
class ToolCall:
    """Who calls a tool: an ``agent`` (and its ``run``), or a ``user`` calling through the MCP server.

    Exactly one of ``agent`` and ``user`` is set. The handlers ask the call, never the caller's kind:

    - ``projects()``: the projects in reach (the agent's workspace; the projects the user can see);
    - ``project``: the default project of tools that take ``project_id`` (the agent's own; a user must
      name one);
    - ``check_write(project)``: a user needs write access to the project (owner, workspace admin or
      operator, superuser), as the API's ``CanWriteProject``; an agent's writes are governed by its
      template's tool permissions instead;
    - ``ledger``: the keyword arguments naming the actor for the services' ledger rows;
    - ``actor``: the author of context versions (the agent, or the user); ``label`` names it in texts.

    Attributes:
        agent: the acting ``AgentInstance`` (with ``project`` and ``project.workspace`` loaded), or ``None``.
        run: the ``AgentRun`` the agent's call belongs to, or ``None``.
        user: the authenticated user calling through the MCP server, or ``None``.
    """

    agent: AgentInstance | None = None
    run: AgentRun | None = None
    user: Any = None

    def __post_init__(self) -> None:
        if (self.agent is None) == (self.user is None):
            raise ValueError("A ToolCall has exactly one caller: an agent or a user.")

    @property
    def project(self) -> Project:
        """The agent's own project. Raises ``NotFound`` (field ``project_id``) for a user, who must name one."""
        if self.agent is None:
            raise NotFound("Name the project: send project_id.", field="project_id")
        return self.agent.project

    def projects(self) -> QuerySet[Project]:
        """The projects in the caller's reach, with their workspace joined."""
        from projects.models import Project

        if self.agent is None:
            return Project.objects.visible_to(self.user).select_related("workspace")
        return Project.objects.filter(workspace_id=self.agent.project.workspace_id).select_related("workspace")

    def check_write(self, project: Project) -> None:
        """Raise ``PermissionDenied`` when a user may only read ``project`` (a workspace viewer)."""
        if self.user is not None and not project.can_write(self.user):
            raise PermissionDenied("Your role in this workspace is read-only.")

    @property
    def ledger(self) -> dict[str, Any]:
        """The actor keywords of the services' ledger rows: ``actor_agent`` and ``run``, or ``actor``."""
        if self.agent is None:
            return {"actor": self.user}
        return {"actor_agent": self.agent, "run": self.run}

    @property
    def actor(self) -> Any:
        """The author of what the call writes: the ``AgentInstance``, or the user."""
        return self.agent if self.agent is not None else self.user

    @property
    def label(self) -> str:
        """``agent '<name>'`` or ``user '<username>'``, for default reasons and change descriptions."""
        if self.agent is None:
            return f"user '{self.user.get_username()}'"
        return f"agent '{self.agent.name}'"


@dataclass(frozen=True)
class ToolResult:
    """What a tool call came to, in the shape of an MCP ``CallToolResult``.

    ``structured`` is the JSON result (``structuredContent``), or ``{"error": {"code", "message", ...}}``
    when ``is_error``. ``text()`` is the JSON text the model reads (``content[0].text``).
    """

    structured: dict[str, Any]
    is_error: bool = False

    def text(self) -> str:
        return json.dumps(self.structured, ensure_ascii=False, default=str)

    def as_mcp(self) -> dict[str, Any]:
        """``{"content": [{"type": "text", "text"}], "structuredContent", "isError"}`` (MCP ``tools/call``)."""
        return {"content": [{"type": "text", "text": self.text()}], "structuredContent": self.structured,
                "isError": self.is_error}

    @classmethod
    def error(cls, code: str, message: str, **extra: Any) -> ToolResult:
        return cls({"error": {"code": code, "message": message, **extra}}, is_error=True)


@dataclass(frozen=True)
class Tool:
    """One tool of the platform.

    Attributes:
        name: the model-visible name (``^[a-z][a-z0-9_]{0,63}$``); a template names it as
            ``{"type": "platform", "op": name}`` (client tools: ``{"type": "client", "name": name}``).
        title, description: for people and for the model.
        input_schema: JSON Schema (draft 2020-12) of the arguments, an object schema.
        output_schema: JSON Schema of the structured result, or ``None``.
        handler: ``handler(call: ToolCall, **arguments) -> dict`` for platform tools (``None`` for client
            tools, which the runtime answers by asking a person).
        read_only, destructive, idempotent: MCP hints; reads default to permission ``allow``, the
            rest to ``ask``.
        kind: ``platform`` (runs here) or ``client`` (carried out on the person's side).
        route: ``(method, path)`` of the API endpoint that does the same, for people reading the catalog.
        in_build_kit: whether the playground build kit offers it.
        render: for client tools, how the person's side shows it (``{"kind": "elicitation"}``).
    """

    name: str
    title: str
    description: str
    input_schema: dict[str, Any] = field(repr=False)
    handler: Callable[..., dict[str, Any]] | None = field(default=None, repr=False)
    output_schema: dict[str, Any] | None = field(default=None, repr=False)
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    kind: str = KIND_PLATFORM
    route: tuple[str, str] | None = None
    in_build_kit: bool = False
    render: dict[str, Any] | None = None

    @property
    def default_permission(self) -> str:
        """``allow`` for read-only tools, ``ask`` for the rest."""
        return "allow" if self.read_only else "ask"

    @property
    def annotations(self) -> dict[str, Any]:
        """MCP ``ToolAnnotations``."""
        return {
            "title": self.title, "readOnlyHint": self.read_only, "destructiveHint": self.destructive,
            "idempotentHint": self.idempotent, "openWorldHint": False,
        }

    def openai_function(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry the model is offered: ``{"type": "function", "function": {"name",
        "description", "parameters"}}`` with ``parameters`` the compact ``model_schema`` of ``input_schema``."""
        return {"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": model_schema(self.input_schema),
        }}

    def from_model(self, arguments: Any) -> Any:
        """``arguments`` as the model sent them, read against the full schema: an empty string in a top-level field
        that the full schema lets be ``null`` stands for ``null`` (``model_schema`` offers such a field as a plain
        string)."""
        if not isinstance(arguments, dict):
            return arguments
        properties = self.input_schema.get("properties") or {}
        return {key: None if value == "" and _nullable(properties.get(key)) else value
                for key, value in arguments.items()}

    def template_entry(self) -> dict[str, Any]:
        """The tool as a template names it: ``{"type": "platform", "op"}``, or a client tool's whole
        definition (``type``, ``name``, ``description``, ``input_schema``, ``render``)."""
        if self.kind == KIND_PLATFORM:
            return {"type": KIND_PLATFORM, "op": self.name}
        entry = {"type": KIND_CLIENT, "name": self.name, "description": self.description,
                 "input_schema": copy.deepcopy(self.input_schema)}
        if self.render is not None:
            entry["render"] = dict(self.render)
        return entry

    def mcp_definition(self) -> dict[str, Any]:
        """The MCP ``Tool``: ``name``, ``title``, ``description``, ``inputSchema``, ``outputSchema``, annotations."""
        definition = {"name": self.name, "title": self.title, "description": self.description,
                      "inputSchema": self.input_schema, "annotations": self.annotations}
        if self.output_schema is not None:
            definition["outputSchema"] = self.output_schema
        return definition

    def validate_arguments(self, arguments: Any) -> list[tuple[str, str]]:
        """Problems of ``arguments`` against ``input_schema``: ``[(path, message)]``, empty when valid."""
        if not isinstance(arguments, dict):
            return [("arguments", "The arguments must be a JSON object.")]
        validator = Draft202012Validator(self.input_schema)
        return [
            (".".join(["arguments", *(str(p) for p in error.absolute_path)]), _problem(error))
            for error in sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
        ]


def _problem(error) -> str:
    """A validation error's message for the model: the limit and the size, not a long value echoed back; the fields
    to choose from for a "one of these fields" rule."""
    value = error.instance
    if error.validator == "maxLength":
        return f"at most {error.validator_value} characters (got {len(value)})."
    if error.validator == "maxItems":
        return f"at most {error.validator_value} items (got {len(value)})."
    if error.validator == "anyOf" and _required_choices(error.schema):
        return f"give one of: {', '.join(_required_choices(error.schema))}."
    return error.message


def _required_choices(schema: dict[str, Any]) -> list[str]:
    """The fields of an ``anyOf`` whose alternatives only require fields (``[{"required": ["context_id"]}, ...]``):
    "give one of these"; empty for any other ``anyOf``."""
    alternatives = schema.get("anyOf")
    if not isinstance(alternatives, list) or not all(
        isinstance(alt, dict) and set(alt) == {"required"} for alt in alternatives
    ):
        return []
    return [name for alt in alternatives for name in alt["required"]]


def _nullable(schema: Any) -> bool:
    return isinstance(schema, dict) and isinstance(schema.get("type"), list) and "null" in schema["type"]


_ENUM_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"))


def _enum_type(values: list[Any]) -> str | None:
    types = {next((name for kind, name in _ENUM_TYPES if isinstance(v, kind)), None) for v in values}
    if types == {"integer", "number"}:
        return "number"
    return types.pop() if len(types) == 1 and None not in types else None


def _described(schema: dict[str, Any], *notes: str) -> dict[str, Any]:
    notes = tuple(note for note in notes if note)
    if notes:
        text = " ".join((schema.get("description", "").rstrip(), *notes)).strip()
        schema["description"] = text
    return schema


def model_schema(schema: Any) -> Any:
    """The compact, portable rendering of a JSON Schema that a model is offered (see the module docstring).

    ``maxLength``, ``maxItems`` and ``maxProperties`` move into the description ("At most 2000 characters.");
    ``format`` too ("An id (UUID)."); an untyped enum gets the type of its values; ``["string", "null"]`` becomes
    ``string`` (an empty string then stands for ``null``, ``Tool.from_model``); an empty ``required`` goes; an
    ``anyOf`` of required fields (``[{"required": ["context_id"]}, {"required": ["name"]}]``) becomes complete
    object alternatives, each with one of those fields required and without the others, beside the full
    ``properties``. Returns a new schema; ``schema`` is not changed.
    """
    if isinstance(schema, list):
        return [model_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: value for key, value in schema.items()
           if key not in ("maxLength", "maxItems", "maxProperties", "format", "required", "anyOf")}
    notes = []
    if "maxLength" in schema:
        notes.append(f"At most {schema['maxLength']} characters.")
    if "maxItems" in schema:
        notes.append(f"At most {schema['maxItems']} items.")
    if "maxProperties" in schema:
        notes.append(f"At most {schema['maxProperties']} keys.")
    if schema.get("format") == "uuid":
        notes.insert(0, "An id (UUID).")
    elif "format" in schema:
        notes.append(f"Format: {schema['format']}.")
    if isinstance(schema.get("type"), list):
        types = [t for t in schema["type"] if t != "null"]
        out["type"] = types[0] if len(types) == 1 else "string"
        if "null" in schema["type"] and out["type"] == "string":
            notes.append("An empty string clears it.")
    if "enum" in schema and "type" not in out and _enum_type(schema["enum"]):
        out["type"] = _enum_type(schema["enum"])
    if schema.get("required"):
        out["required"] = list(schema["required"])
    for key in ("properties", "$defs"):
        if isinstance(schema.get(key), dict):
            out[key] = {name: model_schema(sub) for name, sub in schema[key].items()}
    for key in ("items", "additionalProperties", "oneOf", "allOf", "not"):
        if key in schema and not isinstance(schema[key], bool):
            out[key] = model_schema(schema[key])
    choices = _required_choices(schema)
    if choices and isinstance(out.get("properties"), dict):
        out["anyOf"] = [_alternative(out, choice, choices) for choice in choices]
        notes.append(f"Give one of: {', '.join(choices)}.")
    elif "anyOf" in schema:
        out["anyOf"] = model_schema(schema["anyOf"])
    return _described(out, *notes)


def _alternative(schema: dict[str, Any], choice: str, choices: list[str]) -> dict[str, Any]:
    """One complete alternative of an object schema: ``choice`` required, the other ``choices`` left out."""
    properties = {name: sub for name, sub in schema["properties"].items() if name == choice or name not in choices}
    alternative = {"type": "object", "properties": properties,
                   "required": [*(r for r in schema.get("required", []) if r in properties), choice]}
    if "additionalProperties" in schema:
        alternative["additionalProperties"] = schema["additionalProperties"]
    return alternative


def validate_tool(tool: Tool) -> None:
    """Check one declaration.

    Raises:
        ImproperlyConfigured: a malformed name, no description, an unknown kind, an invalid (or
            non-object) input or output schema, a platform tool without a handler, or a route that is not
            a known method and an ``/api/v1/`` path.
    """
    where = f"Tool '{tool.name}'"
    if not _NAME_RE.match(tool.name):
        raise ImproperlyConfigured(f"{where}: the name must match {_NAME_RE.pattern}.")
    if not tool.description.strip() or not tool.title.strip():
        raise ImproperlyConfigured(f"{where} needs a title and a description.")
    if tool.kind not in (KIND_PLATFORM, KIND_CLIENT):
        raise ImproperlyConfigured(f"{where}: unknown kind '{tool.kind}'.")
    if tool.kind == KIND_PLATFORM and tool.handler is None:
        raise ImproperlyConfigured(f"{where}: a platform tool needs a handler.")
    for label, schema in (("input", tool.input_schema), ("output", tool.output_schema)):
        if schema is None and label == "output":
            continue
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise ImproperlyConfigured(f"{where}: invalid {label} schema: {exc.message}") from exc
        if schema.get("type") != "object":
            raise ImproperlyConfigured(f"{where}: the {label} schema must describe an object.")
    if tool.route is not None and (tool.route[0] not in _METHODS or not tool.route[1].startswith("/api/v1/")):
        raise ImproperlyConfigured(f"{where}: the route must be a known method and an /api/v1/ path.")


class ToolRegistry:
    """Tools by name, in registration order. Thread-safe; the application's is ``tool_registry``."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._lock = threading.RLock()

    def register(self, tool: Tool) -> Tool:
        """Add ``tool`` (validated); registering the same declaration again is a no-op.

        Raises:
            ImproperlyConfigured: the declaration is invalid, or another tool has the name.
        """
        validate_tool(tool)
        with self._lock:
            existing = self._tools.get(tool.name)
            if existing is not None and existing != tool:
                raise ImproperlyConfigured(f"Tool '{tool.name}' is declared twice.")
            self._tools[tool.name] = tool
        return tool

    def unregister(self, name: str) -> None:
        with self._lock:
            self._tools.pop(name, None)

    def get(self, name: str) -> Tool | None:
        """The tool named ``name``, or ``None``."""
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def platform_tools(self) -> list[Tool]:
        """The platform tools, in registration order."""
        return [tool for tool in self if tool.kind == KIND_PLATFORM]

    def client_tools(self) -> list[Tool]:
        """The client tools, in registration order."""
        return [tool for tool in self if tool.kind == KIND_CLIENT]


#: The registry the application uses (filled when the apps are ready).
tool_registry = ToolRegistry()


class _DryRun(Exception):  # noqa: N818 - rolls the dry run's savepoint back, carrying its result
    def __init__(self, result: ToolResult) -> None:
        self.result = result


def check_call(tool: Tool, call: ToolCall, arguments: Any) -> ToolResult | None:
    """The error ``call_tool`` would answer now, or ``None`` when the call would succeed — without its effects.

    The call runs in a savepoint that is always rolled back, so everything it checks is checked (the arguments
    against the schema, that the ids it names exist in the caller's reach, that a lifecycle transition is legal
    now, the services' own validation) and nothing it writes stays: its rows, ledger entries, counters, events
    and ``on_commit`` hooks go with the savepoint. The agent loop asks this before a person is asked to approve a
    call; the approved call is checked again when it runs (it runs through ``call_tool``).
    """
    try:
        with transaction.atomic():
            raise _DryRun(call_tool(tool, call, arguments))
    except _DryRun as dry:
        return dry.result if dry.result.is_error else None


#: Most levels of nested objects/arrays in a tool call's arguments.
ARGUMENTS_MAX_DEPTH = 64
#: The integers a tool argument may hold (the database's 64-bit range).
ARGUMENT_INT_RANGE = (-(2**63), 2**63 - 1)


def unstorable_arguments(arguments: Any) -> str | None:
    """Why the database could not hold ``arguments`` (a decoded JSON value), or ``None``: a NUL character in a key
    or string, NaN or Infinity, a lone surrogate, nesting deeper than ``ARGUMENTS_MAX_DEPTH``, or an integer outside
    ``ARGUMENT_INT_RANGE``. Checked before a tool runs or a person is asked (an ``invalid_arguments`` tool error,
    never a failed run)."""
    try:
        check_json_document(arguments, field="arguments", max_depth=ARGUMENTS_MAX_DEPTH, what="The arguments")
    except InvalidInput as exc:
        return f"Invalid arguments. {exc.message}"
    stack = [arguments]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, int) and not isinstance(node, bool) and not (
                ARGUMENT_INT_RANGE[0] <= node <= ARGUMENT_INT_RANGE[1]):
            low, high = ARGUMENT_INT_RANGE
            return f"Invalid arguments. An integer is outside the range {low}..{high}."
    return None


def call_tool(tool: Tool, call: ToolCall, arguments: Any) -> ToolResult:
    """Run a platform ``tool`` for ``call`` with ``arguments`` and return its result; never raises for the
    tool's sake.

    The arguments are checked against ``input_schema`` and for values the database cannot hold
    (``unstorable_arguments``) first (``invalid_arguments``, one message per path). The handler runs in its own
    savepoint (a read-only tool outside a transaction: in none), so a refusal leaves nothing half-written. Domain
    errors keep their code (``not_found``, ``invalid_transition``, ``version_conflict``, ...); Django validation
    errors, and a value the database still refuses (``DataError``: a string longer than its column, a number out
    of its column's range), become ``invalid_arguments``; a stale write ``conflict``.
    """
    if tool.kind != KIND_PLATFORM:
        return ToolResult.error("not_callable", f"'{tool.name}' is a client tool; a person answers it.")
    unstorable = unstorable_arguments(arguments)
    if unstorable:
        return ToolResult.error("invalid_arguments", unstorable)
    problems = tool.validate_arguments(arguments)
    if problems:
        text = "; ".join(f"{path}: {message}" for path, message in problems)
        return ToolResult.error("invalid_arguments", f"Invalid arguments. {text}",
                                problems=[{"field": p, "message": m} for p, m in problems])
    # A read-only tool outside a transaction runs without one (it has nothing to roll back, and a failed statement
    # poisons no transaction); anything else runs in its own savepoint.
    scope = nullcontext() if tool.read_only and not transaction.get_connection().in_atomic_block else (
        transaction.atomic())
    try:
        with scope:
            return ToolResult(tool.handler(call, **arguments))
    except DomainError as exc:
        return ToolResult.error(exc.code, exc.message, **({"field": exc.field} if exc.field else {}))
    except DjangoValidationError as exc:
        messages = exc.message_dict if hasattr(exc, "error_dict") else {"arguments": exc.messages}
        text = "; ".join(f"{path}: {m}" for path, ms in messages.items() for m in ms)
        return ToolResult.error("invalid_arguments", text)
    except (ObjectDoesNotExist, Http404):
        return ToolResult.error("not_found", "Not found.")
    except ConcurrentTransition:
        return ToolResult.error("conflict", STALE_WRITE_MESSAGE)
    except DataError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ToolResult.error("invalid_arguments", f"Invalid arguments: the database refused a value ({reason}).")
    except OperationalError as exc:
        # Two agents steering each other at the same moment can deadlock; the database picks one of them, whose
        # savepoint is rolled back (and its row locks released). The model may try again; any other failure of
        # the database is not the model's to handle.
        if getattr(exc.__cause__, "sqlstate", None) not in RETRYABLE_SQLSTATES:
            raise
        return ToolResult.error("conflict", "The platform was busy with a conflicting change; try again.")
