"""Helpers of the runtime's integration tests: agents to run, and waiting for what the workers write."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from agents import services
from agents.models import AgentInstance, AgentRun, AgentType
from aiservices.models import ModelPrice
from tests.factories import AgentTypeFactory

from .agent_classes import CALLS, TICKS, CallsAgent, TicksAgent
from .harness import wait_for

#: The model the test agents ask for (and the stub answers as).
MODEL = "rt-model"


def price_model(model: str = MODEL, *, input_usd: str = "2.5", output_usd: str = "10") -> ModelPrice:
    """A ``ModelPrice`` row: USD per million prompt / completion tokens."""
    return ModelPrice.objects.create(
        model=model, input_usd_per_mtok=Decimal(input_usd), output_usd_per_mtok=Decimal(output_usd)
    )


def calls_agent(project, *, calls: int = 3, name: str = "caller", config: dict | None = None,
                **fields: Any) -> AgentInstance:
    """An idle agent of a type whose class is ``CallsAgent``: ``calls`` LLM calls per run, model ``MODEL``, more
    ``config`` (``fail_at``); ``fields`` go to the agent type (``max_cost_usd=...``)."""
    agent_type = AgentTypeFactory(handler=CALLS, config_schema=CallsAgent.config_schema, **fields)
    return services.agent_spawn(
        project=project, agent_type=agent_type, name=name, config={"calls": calls, "model": MODEL, **(config or {})}
    )


def ticks_agent(project, *, ticks: int, seconds: float = 0.05, name: str = "ticker") -> AgentInstance:
    """An idle agent of a type whose class is ``TicksAgent`` (a long loop asking ``should_stop()``)."""
    agent_type = AgentTypeFactory(handler=TICKS, config_schema=TicksAgent.config_schema)
    return services.agent_spawn(
        project=project, agent_type=agent_type, name=name, config={"ticks": ticks, "seconds": seconds}
    )


def loop_template(tools: list[dict[str, Any]], *, max_steps: int | None = None) -> dict[str, Any]:
    """A ``parameters.agent`` template for the agent loop: short instructions, model ``MODEL``, ``tools``."""
    runner: dict[str, Any] = {"permissions": {"default": "allow_reads"}}
    if max_steps is not None:
        runner["max_steps"] = max_steps
    return {
        "instructions": {"agents_md": "You are a test agent. Use the tools, then answer."},
        "llm": {"model": MODEL},
        "tools": tools,
        "runner": runner,
    }


def platform_tool(op: str, permission: str | None = None) -> dict[str, Any]:
    entry = {"type": "platform", "op": op}
    if permission:
        entry["permission"] = permission
    return entry


def loop_agent(project, tools: list[dict[str, Any]], *, max_steps: int | None = None,
               name: str = "looper") -> AgentInstance:
    """An idle agent of a type without an agent class whose committed revision is ``loop_template(tools)``: it
    runs as the agent loop."""
    agent_type = AgentTypeFactory(handler="")
    services.agent_type_commit_revision(agent_type, template=loop_template(tools, max_steps=max_steps))
    return services.agent_spawn(project=project, agent_type=agent_type, name=name)


def fresh(obj):
    """``obj`` re-read from the database."""
    return type(obj).objects.get(pk=obj.pk)


def _describe(run: AgentRun) -> str:
    run = fresh(run)
    agent = AgentInstance.objects.get(pk=run.agent_id)
    return (f"run {run.status} ({run.error_code}: {run.error_message}), worker {run.worker!r}, "
            f"attempts {run.attempts}; agent {agent.status} (last_error {agent.last_error!r})")


def run_in(run: AgentRun, *statuses: str, timeout: float = 15.0) -> AgentRun:
    """Wait until ``run`` has one of ``statuses``; returns it re-read."""

    def reached():
        current = fresh(run)
        return current if current.status in statuses else None

    return wait_for(reached, timeout=timeout, message=lambda: f"run never {'/'.join(statuses)}: {_describe(run)}")


def agent_in(agent: AgentInstance, status: str, timeout: float = 15.0) -> AgentInstance:
    """Wait until ``agent`` has ``status``; returns it re-read."""

    def reached():
        current = fresh(agent)
        return current if current.status == status else None

    return wait_for(reached, timeout=timeout, message=lambda: f"agent never {status}: it is {fresh(agent).status}")


def ledger(agent: AgentInstance) -> list[tuple[str, str, str, Any]]:
    """The agent's lifecycle changes, oldest first: ``(from_status, to_status, reason, run_id)``."""
    rows = agent.transitions.order_by("created_at", "id").values_list("from_status", "to_status", "reason", "run_id")
    return [tuple(row) for row in rows]


def agent_type_of(agent: AgentInstance) -> AgentType:
    return AgentType.objects.get(pk=agent.agent_type_id)
