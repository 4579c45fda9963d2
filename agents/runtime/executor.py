"""The worker side of a run: claim it, run the agent class with a heartbeat, and record how it ended.

``execute_run`` is what the Celery task ``agents.runtime.tasks.execute_run`` calls. The agent's code runs here,
in the worker, never in a web request. While it runs, a heartbeat thread stamps the agent's
``last_heartbeat_at`` every ``AGENT_HEARTBEAT_SECONDS`` (and every step stamps it too), so the reaper
can tell a long LLM call from a dead worker.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from ..models import AgentInstance, AgentRun
from ..registry import BaseAgent, UnknownAgentClass, registry
from . import services
from .context import RunContext
from .exceptions import NotRunnable, RunFailure, RunInterrupted

logger = logging.getLogger(__name__)


def agent_runner(agent: AgentInstance) -> type[BaseAgent]:
    """The class that runs ``agent``: its type's registered class when that class has ``run(ctx)``; for a type
    without a class, the tool-calling loop over the agent's template (``agents.runtime.loop.ToolLoopAgent``).

    Raises:
        NotRunnable: the type names a class that is not registered or has no ``run``, or the type has no class
            and the agent no template (400 ``not_runnable``).
    """
    from .loop import ToolLoopAgent

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
        return ToolLoopAgent
    raise NotRunnable(
        f"Agent type '{agent.agent_type.slug}' has no agent class and the agent no template: commit a template "
        "revision (or set a handler whose class has run(ctx)) and spawn again."
    )


def template_for(agent: AgentInstance, cls: type[BaseAgent]) -> dict[str, Any]:
    """The agent's recorded effective template, else the class's own ``template``, else ``{}``."""
    if isinstance(agent.effective_template, dict) and agent.effective_template:
        return agent.effective_template
    return dict(getattr(cls, "template", None) or {})


class Heartbeat:
    """Stamp ``last_heartbeat_at`` of one agent every ``interval`` seconds on a thread of its own (its own
    database connection, closed at the end), for as long as the ``with`` block runs."""

    def __init__(self, agent_id, interval: float) -> None:
        self.agent_id = agent_id
        self.interval = max(0.1, interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{agent_id}", daemon=True)

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                AgentInstance.objects.filter(pk=self.agent_id).update(last_heartbeat_at=timezone.now())
        except Exception:
            logger.exception("Heartbeat of agent %s stopped", self.agent_id)
        finally:
            connection.close()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)


def _result(value: Any) -> Any:
    """What ``run`` returned, as the run's JSON ``result``: a dict as is, text as ``{"message"}``, ``None``: ``{}``."""
    if value is None:
        return {}
    if isinstance(value, str):
        return {"message": value}
    return value


def execute_run(run_id, *, worker: str = "") -> str:
    """Execute run ``run_id`` on this worker, if it is this worker's to run (``services.run_claim``).

    Returns the outcome for the log: ``skipped`` (not claimable: already taken, finished, not its turn),
    or the run's status afterwards (``succeeded``, ``failed``, ``paused``, ``waiting``, ``cancelled``).
    Agent code that raises is a ``failed`` run (``agent_error``), never a crashed worker; a stop requested
    at a step boundary parks (``paused``) or cancels it; the database being unreachable propagates (the
    run stays ``running`` until the reaper queues it again).
    """
    run = services.run_claim(run_id, worker=worker)
    if run is None:
        return "skipped"
    agent = AgentInstance.objects.select_related("agent_type", "project__workspace").get(pk=run.agent_id)
    run = AgentRun.objects.select_related("issue").get(pk=run.pk)
    with Heartbeat(agent.pk, settings.AGENT_HEARTBEAT_SECONDS):
        try:
            cls = agent_runner(agent)
            ctx = RunContext(run, agent, template=template_for(agent, cls))
            value = cls(agent).run(ctx)
            if ctx.stop_seen:  # the class returned early because should_stop() said so
                raise RunInterrupted(RunInterrupted.PAUSED)
            run = services.run_complete(run, _result(value))
        except RunInterrupted as stop:
            # Paused, cancelled or terminated: run_park parks a run whose agent is paused, cancels one whose agent
            # is terminated, and leaves a run that is no longer running (cancelled, waiting) as it is.
            run = services.run_park(run) if stop.reason != RunInterrupted.WAITING else run
            run = AgentRun.objects.get(pk=run.pk)
        except RunFailure as failure:
            run = services.run_fail(run, code=failure.code, message=failure.message)
        except NotRunnable as exc:
            run = services.run_fail(run, code=exc.code, message=exc.message)
        except Exception as exc:
            logger.exception("Run %s: the agent class raised", run.pk)
            run = services.run_fail(run, code="agent_error", message=f"{type(exc).__name__}: {exc}")
    logger.info("Run %s of agent %s: %s", run.pk, agent.pk, run.status)
    return run.status
