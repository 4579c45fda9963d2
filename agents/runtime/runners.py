"""Which class runs an agent, and with which template: what the services (``run_create`` refuses an agent nothing can
run) and the executor (which runs it) both need, so neither imports the other for it.

The runtime's modules import in one direction: ``tasks`` (the Celery entry point) → ``executor`` → ``loop`` →
``context`` → ``services`` → ``runners`` → ``trace`` (``tests/syndarix/test_layering.py`` holds it).
"""

from __future__ import annotations

from typing import Any

from ..models import AgentInstance
from ..registry import BaseAgent, UnknownAgentClass, registry
from .exceptions import NotRunnable


def agent_class(agent: AgentInstance) -> type[BaseAgent] | None:
    """The registered class that runs ``agent`` (its type's, when that class has ``run(ctx)``), or ``None`` when the
    agent runs as the tool-calling loop over its template (a type without a class; the executor runs
    ``agents.runtime.loop.ToolLoopAgent``).

    Raises:
        NotRunnable: the type names a class that is not registered or has no ``run``, or the type has no class
            and the agent no template (400 ``not_runnable``).
    """
    handler = agent.agent_type.handler
    if handler:
        try:
            cls = registry.get(handler)
        except UnknownAgentClass:
            raise NotRunnable(f"Agent class '{handler}' is not registered (AGENT_REGISTRY_MODULES).") from None
        if not callable(getattr(cls, "run", None)):
            raise NotRunnable(f"Agent class '{handler}' has no run(ctx) method, so its agents cannot be run.")
        return cls
    if isinstance(agent.effective_template, dict) and agent.effective_template:
        return None
    raise NotRunnable(
        f"Agent type '{agent.agent_type.slug}' has no agent class and the agent no template: commit a template "
        "revision (or set a handler whose class has run(ctx)) and spawn again."
    )


def template_for(agent: AgentInstance, cls: type[BaseAgent]) -> dict[str, Any]:
    """The agent's recorded effective template, else the class's own ``template``, else ``{}``."""
    if isinstance(agent.effective_template, dict) and agent.effective_template:
        return agent.effective_template
    return dict(getattr(cls, "template", None) or {})
