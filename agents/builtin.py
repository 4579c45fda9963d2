"""The built-in agent classes: ``reviewer``, ``builder`` and ``tester``.

They are registered by default (``AgentRegistry.populate``) and keep their working state in the
instance's ``short_term_memory``, so their hooks can be watched from the API and the admin:

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

from .registry import AgentRegistry, BaseAgent

#: Tasks kept in ``short_term_memory["history"]`` (oldest dropped first).
HISTORY_LIMIT = 20


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


class WorkingMemoryAgent(BaseAgent):
    """Shared hooks of the built-ins; a subclass names its workspace key and fills it.

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
            "model": {"type": "string", "minLength": 1, "description": "LLM used to write code."},
            "language": {"enum": ["python", "typescript", "go", "rust", "java"], "default": "python"},
            "build_command": {"type": "string", "minLength": 1, "default": "make build"},
            "max_iterations": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5},
            "allow_network": {"type": "boolean", "default": False},
            "artifacts_dir": {"type": "string", "minLength": 1, "default": "dist"},
        },
    }
    workspace_key = "build"

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
            "model": {"type": "string", "minLength": 1, "description": "LLM used to write tests."},
            "framework": {"enum": ["pytest", "unittest", "jest", "go-test"], "default": "pytest"},
            "test_command": {"type": "string", "minLength": 1, "default": "pytest -q"},
            "coverage_threshold": {"type": "number", "minimum": 0, "maximum": 100, "default": 80},
            "max_parallel": {"type": "integer", "minimum": 1, "maximum": 64, "default": 4},
            "retry_flaky": {"type": "integer", "minimum": 0, "maximum": 5, "default": 1},
        },
    }
    workspace_key = "testing"

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
