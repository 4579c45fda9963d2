"""Agent classes of the runtime's integration tests and benchmark, loaded by the worker processes through
``AGENT_REGISTRY_MODULES=tests.runtime.agent_classes`` (and registered in the test process by the fixtures).
"""

from __future__ import annotations

import time
from typing import Any

from agents.registry import AgentRegistry, BaseAgent

#: The slugs of ``CallsAgent`` and ``TicksAgent`` (``AgentType.handler`` values).
CALLS = "rt-calls"
TICKS = "rt-ticks"


class CallsAgent(BaseAgent):
    """Makes ``config["calls"]`` LLM calls (default 3), one user message each (``"<instruction> / step <n>"``),
    saving a checkpoint after each, so a paused, re-queued or resumed run continues with the next call and
    never repeats one. Returns ``{"message": <the answers joined with " | ">, "calls": n}``."""

    slug = CALLS
    name = "Runtime test: N LLM calls"
    description = "Makes a configured number of LLM calls, checkpointing after each."
    capabilities = ["test"]
    config_schema = {
        "type": "object",
        "properties": {
            "calls": {"type": "integer", "minimum": 1},
            "model": {"type": "string"},
            "fail_at": {"type": "integer", "minimum": 0, "description": "Raise before this call (a bug)."},
        },
        "additionalProperties": False,
    }

    def run(self, ctx) -> dict[str, Any]:
        calls = int(ctx.config.get("calls", 3))
        state = ctx.checkpoint or {"done": 0, "answers": []}
        while state["done"] < calls:
            if ctx.config.get("fail_at") == state["done"]:
                raise RuntimeError(f"boom at call {state['done']}")
            completion = ctx.llm.chat([{"role": "user", "content": f"{ctx.instruction} / step {state['done']}"}])
            state = {"done": state["done"] + 1, "answers": [*state["answers"], completion.content]}
            ctx.save_checkpoint(state)
        return {"message": " | ".join(state["answers"]), "calls": calls}


class TicksAgent(BaseAgent):
    """A long loop without LLM calls: ``config["ticks"]`` ticks of ``config["seconds"]`` (default 0.05 s), asking
    ``ctx.should_stop()`` before each and checkpointing after each. Returns ``{"message": "<n> ticks"}``."""

    slug = TICKS
    name = "Runtime test: a long loop"
    description = "Ticks, asking should_stop() at each tick."
    capabilities = ["test"]
    config_schema = {
        "type": "object",
        "properties": {"ticks": {"type": "integer", "minimum": 1}, "seconds": {"type": "number", "minimum": 0}},
        "additionalProperties": False,
    }

    def run(self, ctx) -> dict[str, Any] | None:
        ticks, seconds = int(ctx.config.get("ticks", 10)), float(ctx.config.get("seconds", 0.05))
        done = ctx.checkpoint or 0
        while done < ticks:
            if ctx.should_stop():
                return None
            time.sleep(seconds)
            done += 1
            ctx.save_checkpoint(done)
        return {"message": f"{done} ticks"}


def register_agents(registry: AgentRegistry) -> None:
    registry.register(CallsAgent)
    registry.register(TicksAgent)
