"""The worker side of a run: claim it, run the agent class, and record how it ended.

``execute_run`` is what the Celery task ``agents.runtime.tasks.execute_run`` calls. The agent's code runs here,
in the worker, never in a web request. A worker process holds many runs at once (Celery's threads pool: a run
waiting on its LLM holds a thread, not a process, and no database connection); at most ``AGENT_WORKER_ACTIVE_RUNS`` of
them execute at once (``slots``), the others wait on their LLM or for a slot. One heartbeat per process
(``WorkerHeartbeat``) stamps ``last_heartbeat_at`` of every agent whose run the process holds, every
``AGENT_HEARTBEAT_SECONDS``, in one statement (and every step stamps its agent too), so the reaper can tell a long
LLM call from a dead worker.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ..models import AgentInstance, AgentRun
from . import services, telemetry
from .context import RunContext
from .exceptions import NotRunnable, RunFailure, RunInterrupted
from .loop import ToolLoopAgent
from .runners import agent_class, template_for
from .slots import slots

logger = logging.getLogger(__name__)


class WorkerHeartbeat:
    """The heartbeat of one worker process: while it holds runs, one thread stamps
    ``last_heartbeat_at`` of their agents every ``AGENT_HEARTBEAT_SECONDS`` with one ``UPDATE … WHERE id IN``,
    and gives its database connection back after each stamp. It starts with the first run the process takes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[Any, int] = {}  # agent id → runs of it this process holds (1, or 2 while one hands over)
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def hold(self, agent_id) -> None:
        """Count ``agent_id`` among the agents this process beats for (until ``release``)."""
        with self._lock:
            self._held[agent_id] = self._held.get(agent_id, 0) + 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._beat, name="worker-heartbeat", daemon=True)
                self._thread.start()

    def release(self, agent_id) -> None:
        with self._lock:
            left = self._held.get(agent_id, 0) - 1
            if left > 0:
                self._held[agent_id] = left
            else:
                self._held.pop(agent_id, None)

    @property
    def held(self) -> list:
        """The agents beaten for now."""
        with self._lock:
            return list(self._held)

    def beat(self) -> int:
        """Stamp every held agent now (one statement); returns how many rows it stamped.

        A row locked at this moment is skipped (``SKIP LOCKED`` on PostgreSQL): its lock holder is that run's own
        step or a service acting on it, so it is alive, and its step stamps it anyway. Waiting for such a lock while
        holding hundreds of others would stall every run of the process behind one transaction.
        """
        agents = self.held
        if not agents:
            return 0
        try:
            rows = AgentInstance.objects.filter(pk__in=agents)
            if connection.vendor != "postgresql":
                return rows.update(last_heartbeat_at=timezone.now())
            with transaction.atomic():
                unlocked = rows.select_for_update(skip_locked=True).values("pk")
                return AgentInstance.objects.filter(pk__in=unlocked).update(last_heartbeat_at=timezone.now())
        finally:
            connection.close()  # back to the pool: a heartbeat holds no connection between stamps

    def _beat(self) -> None:
        while not self._wake.wait(max(0.1, settings.AGENT_HEARTBEAT_SECONDS)):
            try:
                self.beat()
            except Exception:
                logger.exception("The worker heartbeat failed; it tries again in %s s",
                                 settings.AGENT_HEARTBEAT_SECONDS)


#: This process's heartbeat.
heartbeat = WorkerHeartbeat()


def _result(value: Any) -> Any:
    """What ``run`` returned, as the run's JSON ``result``: a dict as is, text as ``{"message"}``, ``None``: ``{}``."""
    if value is None:
        return {}
    if isinstance(value, str):
        return {"message": value}
    return value


@telemetry.run_execution
def execute_run(run_id, *, worker: str = "", task_id: str | None = None) -> str:
    """Execute run ``run_id`` on this worker, if it is this worker's to run (``services.run_claim``).

    Args:
        worker: this worker's node name (recorded on the run).
        task_id: the Celery task delivering it (a run waiting out an LLM outage is claimed only by its own task).

    Returns the outcome for the log: ``skipped`` (not claimable: already taken, finished, not its turn),
    or the run's status afterwards (``succeeded``, ``failed``, ``paused``, ``waiting``, ``cancelled``, or
    ``running`` while it waits out an LLM outage). Agent code that raises is a ``failed`` run (``agent_error``),
    never a crashed worker; a stop requested at a step boundary parks (``paused``) or cancels it; the database
    being unreachable propagates (the run stays ``running`` until the reaper queues it again).
    """
    with slots.active():
        return _execute(run_id, worker=worker, task_id=task_id)


def _execute(run_id, *, worker: str, task_id: str | None) -> str:
    run = services.run_claim(run_id, worker=worker, task_id=task_id)
    if run is None:
        return "skipped"
    agent = run.agent
    telemetry.run_claimed(run)
    heartbeat.hold(agent.pk)
    try:
        try:
            cls = agent_class(agent) or ToolLoopAgent
            ctx = RunContext(run, agent, template=template_for(agent, cls))
            value = cls(agent).run(ctx)
            if ctx.stop_seen:  # the class returned early because should_stop() said so
                raise RunInterrupted(RunInterrupted.PAUSED)
            run = services.run_complete(run, _result(value))
        except RunInterrupted as stop:
            # Paused, cancelled or terminated: run_park parks a run whose agent is paused, cancels one whose agent
            # is terminated, and leaves a run that is no longer running (cancelled, waiting, retrying) as it is.
            if stop.reason in (RunInterrupted.PAUSED, RunInterrupted.CANCELLED):
                run = services.run_park(run)
            run = AgentRun.objects.get(pk=run.pk)
        except RunFailure as failure:
            run = services.run_fail(run, code=failure.code, message=failure.message)
        except NotRunnable as exc:
            run = services.run_fail(run, code=exc.code, message=exc.message)
        except Exception as exc:
            logger.exception("Run %s: the agent class raised", run.pk)
            run = services.run_fail(run, code="agent_error", message=f"{type(exc).__name__}: {exc}")
    finally:
        heartbeat.release(agent.pk)
    logger.info("Run %s of agent %s: %s", run.pk, agent.pk, run.status)
    return run.status
