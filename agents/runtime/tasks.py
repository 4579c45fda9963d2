"""Celery tasks of the agents app (thin: the work is in ``agents.runtime`` and ``agents.registry.hooks``).

The agents app imports this module when it is ready (``AgentsConfig.ready``), which registers the tasks in
every process that sets Django up: web, worker and beat.

Every task may be delivered more than once (late acknowledgement, a worker lost mid-task, the reaper
sending again): each re-reads the database under row locks and does nothing when there is nothing to do.
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="agents.runtime.tasks.execute_run", bind=True, ignore_result=True)
def execute_run(self, run_id: str) -> str:
    """Execute one run (``agents.runtime.executor.execute_run``); returns its outcome for the worker's log."""
    from .executor import execute_run as execute

    return execute(run_id, worker=self.request.hostname or "")


@shared_task(name="agents.runtime.tasks.run_hooks", ignore_result=True)
def run_hooks(agent_id: str) -> list[str]:
    """Run the agent's pending lifecycle hooks in ledger order (``agents.registry.hooks.run_pending_hooks``).

    Returns each hook's outcome (``"<hook>: ok"``...).
    """
    from ..registry.hooks import run_pending_hooks

    return [f"{o.hook}: {o.status}" for o in run_pending_hooks(agent_id)]


@shared_task(name="agents.runtime.tasks.reap_stale_runs", ignore_result=True)
def reap_stale_runs() -> dict[str, int]:
    """The periodic job (``celery beat``, every ``AGENT_HEARTBEAT_SECONDS``): ``runtime.services.runs_reap_stale``.

    Returns the number of runs per outcome.
    """
    from .services import runs_reap_stale

    report = runs_reap_stale()
    return {key: len(value) for key, value in vars(report).items()}
