"""The built-in agent classes: ``reviewer``, ``builder`` and ``tester``.

They run as the agent loop (``agents.runtime.loop.ToolLoopAgent``) over the template each ships (its
instructions; read tools ``allow``, write tools ``ask``, ``request_input``), which ``sync_agent_types``
commits as their type's first revision. They are registered by default (``AgentRegistry.populate``)
and keep their working state in the instance's ``short_term_memory``, so their hooks can be watched
from the API and the admin:

- ``initialize`` (spawn): the resolved config (schema defaults + the instance's ``config``), the
  start time, zeroed counters and the class's own workspace (``review`` / ``build`` / ``testing``).
- ``activate`` (→ WORKING): one more activation, its time, the task being worked on (also kept in a
  short task history) and the class's own bookkeeping (review rounds, build attempts, test runs).
- ``deactivate`` (WORKING/WAITING → PAUSED or IDLE): one more deactivation and the seconds spent
  working since the last activation.
- ``shutdown`` (→ TERMINATED): memory is flushed; only a summary of the agent's life is kept.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from ..runtime.loop import ToolLoopAgent
from .base import AgentRegistry, BaseAgent

#: Tasks kept in ``short_term_memory["history"]`` (oldest dropped first).
HISTORY_LIMIT = 20


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _tool(op: str, permission: str) -> dict[str, str]:
    return {"type": "platform", "op": op, "permission": permission}


#: The client tool every built-in may use to ask its person for input (resolved by the agent loop).
REQUEST_INPUT_EMBED = {"@ag.embed": {"@ag.references": {"workflow": {"slug": "__sx__request_input"}}}}
#: Read-only platform tools every built-in may call without asking.
READ_TOOLS = [_tool(op, "allow") for op in ("query_issues", "query_agents", "list_contexts", "read_context")]


def _template(instructions: str, writes: list[str]) -> dict[str, Any]:
    """A built-in's template: its instructions, the read tools (``allow``), its write tools (``ask``: a person
    approves each call) and ``request_input``. It names no model: the agent's config ``model``, else the setting
    ``AGENT_LLM_MODEL`` (the model the deployment's server serves)."""
    return {
        "instructions": {"agents_md": instructions},
        "llm": {"extras": {"temperature": 0.2}},
        "tools": [*READ_TOOLS, *(_tool(op, "ask") for op in writes), REQUEST_INPUT_EMBED],
        "runner": {"permissions": {"default": "allow_reads"}, "max_steps": 20},
    }


class WorkingMemoryAgent(ToolLoopAgent):
    """Shared hooks of the built-ins; a subclass names its workspace key and fills it. The built-ins run as the
    agent loop (``ToolLoopAgent``) over their ``template``.

    Subclasses set ``workspace_key`` and implement ``prepare(config)`` (the workspace at spawn) and
    ``on_activate(workspace, config)`` (bookkeeping for one activation).
    """

    workspace_key: ClassVar[str] = "workspace"

    def prepare(self, config: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def on_activate(self, workspace: dict[str, Any], config: dict[str, Any]) -> None:
        raise NotImplementedError

    # --- Hooks. ---

    def initialize(self) -> None:
        config = self.resolved_config
        memory = self.memory
        memory.clear()
        memory.update(
            {
                "agent_class": self.slug,
                "config": config,
                "started_at": _iso(self.now()),
                "activations": 0,
                "last_activated_at": None,
                "deactivations": 0,
                "last_deactivated_at": None,
                "working_seconds": 0.0,
                "task": self.agent.current_task,
                "history": [],
                self.workspace_key: self.prepare(config),
            }
        )

    def activate(self) -> None:
        memory = self._initialized_memory()
        now = self.now()
        config = memory["config"] = self.resolved_config
        memory["activations"] += 1
        memory["last_activated_at"] = _iso(now)
        task = self.agent.current_task
        memory["task"] = task
        history = memory["history"]
        if task and (not history or history[-1]["task"] != task):
            history.append({"task": task, "at": _iso(now)})
            del history[:-HISTORY_LIMIT]
        self.on_activate(memory[self.workspace_key], config)

    def deactivate(self) -> None:
        memory = self._initialized_memory()
        now = self.now()
        memory["working_seconds"] = round(memory["working_seconds"] + self._open_session_seconds(memory, now), 3)
        memory["deactivations"] += 1
        memory["last_deactivated_at"] = _iso(now)

    def shutdown(self) -> None:
        memory = self._initialized_memory()
        now = self.now()
        summary = {
            "agent_class": self.slug,
            "started_at": memory["started_at"],
            "activations": memory["activations"],
            "deactivations": memory["deactivations"],
            "working_seconds": round(memory["working_seconds"] + self._open_session_seconds(memory, now), 3),
            "tasks": [entry["task"] for entry in memory["history"]],
            "tasks_completed": self.agent.tasks_completed,
            "tokens_used": self.agent.tokens_used,
        }
        memory.clear()
        memory.update({"flushed_at": _iso(now), "summary": summary})

    # --- Helpers. ---

    def _initialized_memory(self) -> dict[str, Any]:
        """The memory, initialised first when the agent was spawned before its type had a handler."""
        if self.memory.get("agent_class") != self.slug or self.workspace_key not in self.memory:
            self.initialize()
        return self.memory

    @staticmethod
    def _open_session_seconds(memory: dict[str, Any], now: datetime) -> float:
        """Seconds since the last activation when it was not followed by a deactivation, else 0."""
        activated = _parse(memory.get("last_activated_at"))
        deactivated = _parse(memory.get("last_deactivated_at"))
        if activated is None or (deactivated is not None and deactivated >= activated):
            return 0.0
        return max(0.0, (now - activated).total_seconds())


class ReviewerAgent(WorkingMemoryAgent):
    """Reviews changes against a checklist of focus areas."""

    slug = "reviewer"
    name = "Reviewer"
    description = "Reviews code changes for correctness, security and test coverage, and reports findings."
    capabilities = ["code_review", "security_review", "style_check"]
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "model": {"type": "string", "minLength": 1, "description": "LLM used for the review."},
            "strictness": {"enum": ["lenient", "normal", "strict"], "default": "normal"},
            "focus": {
                "type": "array",
                "items": {"enum": ["correctness", "security", "performance", "style", "tests", "docs"]},
                "uniqueItems": True,
                "minItems": 1,
                "default": ["correctness", "security", "tests"],
            },
            "max_files_per_review": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
            "request_changes_on": {
                "enum": ["blocker", "major", "minor"],
                "default": "major",
                "description": "Lowest finding severity that makes the review request changes.",
            },
        },
    }
    workspace_key = "review"
    template = _template(
        "# Reviewer\n\nYou review the change an issue describes for correctness, security and test coverage.\n"
        "1. Read the issue and the project's shared contexts (`list_contexts`, `read_context`).\n"
        "2. Write your findings, each with a severity (blocker, major, minor), to the shared context `review` "
        "with `write_context` (mode `merge`).\n"
        "3. Set the issue's status with `update_issue` when the review is done.\n"
        "Ask the person with `request_input` when something you need is nowhere to be found. Finish with a "
        "short summary of the findings.",
        ["write_context", "update_issue"],
    )

    def prepare(self, config: dict[str, Any]) -> dict[str, Any]:
        return {
            "checklist": [{"area": area, "checked": False} for area in config["focus"]],
            "strictness": config["strictness"],
            "files_budget": config["max_files_per_review"],
            "rounds": 0,
            "findings": [],
        }

    def on_activate(self, workspace: dict[str, Any], config: dict[str, Any]) -> None:
        workspace["rounds"] += 1
        for item in workspace["checklist"]:
            item["checked"] = False


class BuilderAgent(WorkingMemoryAgent):
    """Builds and changes code with a configured toolchain."""

    slug = "builder"
    name = "Builder"
    description = "Writes and refactors code, then builds it with the project's toolchain."
    capabilities = ["code_generation", "refactoring", "build"]
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "model": {"type": "string", "minLength": 1,
                      "description": "LLM used to write code (default: the setting AGENT_LLM_MODEL)."},
            "language": {"enum": ["python", "typescript", "go", "rust", "java"], "default": "python"},
            "build_command": {"type": "string", "minLength": 1, "default": "make build"},
            "max_iterations": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5},
            "allow_network": {"type": "boolean", "default": False},
            "artifacts_dir": {"type": "string", "minLength": 1, "default": "dist"},
        },
    }
    workspace_key = "build"
    template = _template(
        "# Builder\n\nYou plan and carry out the work an issue describes.\n"
        "1. Read the issue and the project's shared contexts (`list_contexts`, `read_context`).\n"
        "2. Record your plan and what you changed in the shared context `build` (`write_context`, mode `merge`).\n"
        "3. Split follow-up work into new issues (`create_issue`) and update the issue you work on "
        "(`update_issue`).\n"
        "Every write needs a person's approval. Ask the person with `request_input` when a decision is theirs. "
        "Finish with a short summary of what you did.",
        ["write_context", "create_issue", "update_issue", "spawn_agent"],
    )

    def prepare(self, config: dict[str, Any]) -> dict[str, Any]:
        return {
            "toolchain": {"language": config["language"], "command": config["build_command"]},
            "network": config["allow_network"],
            "attempts": 0,
            "iterations_left": config["max_iterations"],
            "artifacts_dir": config["artifacts_dir"],
        }

    def on_activate(self, workspace: dict[str, Any], config: dict[str, Any]) -> None:
        workspace["attempts"] += 1
        workspace["iterations_left"] = max(0, config["max_iterations"] - workspace["attempts"])


class TesterAgent(WorkingMemoryAgent):
    """Writes and runs tests and checks coverage against a threshold."""

    slug = "tester"
    name = "Tester"
    description = "Writes and runs tests, retries flaky ones and checks coverage against a threshold."
    capabilities = ["test_generation", "test_execution", "coverage_report"]
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "model": {"type": "string", "minLength": 1,
                      "description": "LLM used to write tests (default: the setting AGENT_LLM_MODEL)."},
            "framework": {"enum": ["pytest", "unittest", "jest", "go-test"], "default": "pytest"},
            "test_command": {"type": "string", "minLength": 1, "default": "pytest -q"},
            "coverage_threshold": {"type": "number", "minimum": 0, "maximum": 100, "default": 80},
            "max_parallel": {"type": "integer", "minimum": 1, "maximum": 64, "default": 4},
            "retry_flaky": {"type": "integer", "minimum": 0, "maximum": 5, "default": 1},
        },
    }
    workspace_key = "testing"
    template = _template(
        "# Tester\n\nYou check the work an issue describes and report what fails.\n"
        "1. Read the issue and the project's shared contexts (`list_contexts`, `read_context`).\n"
        "2. Record the test plan and results in the shared context `testing` (`write_context`, mode `merge`).\n"
        "3. Report each regression as a new issue (`create_issue`) with reproduction steps.\n"
        "Finish with a short summary: what passed, what failed.",
        ["write_context", "create_issue"],
    )

    def prepare(self, config: dict[str, Any]) -> dict[str, Any]:
        return {
            "plan": {
                "framework": config["framework"],
                "command": config["test_command"],
                "coverage_threshold": config["coverage_threshold"],
                "parallel": config["max_parallel"],
                "retries": config["retry_flaky"],
            },
            "runs": 0,
            "last_run_at": None,
        }

    def on_activate(self, workspace: dict[str, Any], config: dict[str, Any]) -> None:
        workspace["runs"] += 1
        workspace["last_run_at"] = _iso(self.now())


BUILTIN_AGENTS: tuple[type[BaseAgent], ...] = (ReviewerAgent, BuilderAgent, TesterAgent)


def register_agents(registry: AgentRegistry) -> None:
    """Register the built-in classes (called by ``AgentRegistry.populate``)."""
    for cls in BUILTIN_AGENTS:
        registry.register(cls)
