"""Celery tasks of the agents app (thin: the work is in ``agents.runtime`` and ``agents.registry.hooks``).

The agents app imports this module when it is ready (``AgentsConfig.ready``), which registers the tasks in
every process that sets Django up: web, worker and beat.

Every task may be delivered more than once (late acknowledgement, a worker lost mid-task, the reaper
sending again): each re-reads the database under row locks and does nothing when there is nothing to do.

Queues (``CELERY_TASK_ROUTES``): runs go to the default queue (``CELERY_TASK_DEFAULT_QUEUE``), the housekeeping
(``reap_stale_runs``, ``run_hooks``) to ``CELERY_MAINTENANCE_QUEUE``, which the Procfile's ``beat`` process
consumes, so a run queue full of work never delays it. A worker that starts (``worker_ready``) re-queues the runs
its node name held at once (``runs_requeue_for_worker``).
"""

from __future__ import annotations

import logging

from celery import current_app, shared_task
from celery.signals import worker_ready

logger = logging.getLogger(__name__)

#: The tasks that go to the maintenance queue (``CELERY_MAINTENANCE_QUEUE``).
MAINTENANCE_TASKS = frozenset({
    "agents.runtime.tasks.reap_stale_runs", "agents.runtime.tasks.run_hooks", "agents.events.tasks.prune_events",
})


def route_task(name, args, kwargs, options, task=None, **kw) -> dict[str, str] | None:
    """The Celery router (``CELERY_TASK_ROUTES``): ``MAINTENANCE_TASKS`` to the app's ``maintenance_queue``
    (``CELERY_MAINTENANCE_QUEUE``, read at each send), the rest to the default queue (``None``)."""
    if name in MAINTENANCE_TASKS:
        return {"queue": current_app.conf.maintenance_queue}
    return None


@shared_task(name="agents.runtime.tasks.execute_run", bind=True, ignore_result=True)
def execute_run(self, run_id: str) -> str:
    """Execute one run (``agents.runtime.executor.execute_run``); returns its outcome for the worker's log."""
    from .executor import execute_run as execute

    return execute(run_id, worker=self.request.hostname or "", task_id=self.request.id)


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


@worker_ready.connect(dispatch_uid="agents.runtime.requeue_on_start")
def requeue_on_start(sender=None, **kwargs) -> None:
    """``worker_ready``: the runs this worker's node name held when its previous process ended are queued again at
    once (``services.runs_requeue_for_worker``), instead of waiting for the heartbeat timeout."""
    from .services import runs_requeue_for_worker

    hostname = getattr(sender, "hostname", "") or ""
    try:
        report = runs_requeue_for_worker(hostname)
    except Exception:  # the reaper recovers them later; a worker must start whatever happens here
        logger.exception("Worker %s could not re-queue the runs it held before it started", hostname)
        return
    if report.requeued or report.paused or report.failed or report.cancelled:
        logger.info("Worker %s started: runs re-queued %s, paused %s, failed %s, cancelled %s", hostname,
                    report.requeued, report.paused, report.failed, report.cancelled)
