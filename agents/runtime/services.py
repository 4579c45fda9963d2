"""Runs: every change of a run's status, and dispatching runs to the workers.

One function per action. Each locks the agent row, then the run (then a request), checks where both
stand, changes them together and moves the agent through the lifecycle guard
(``agents.services.agent_transition``, ledger rows naming the run). Celery messages are sent only
after the transaction commits (``transaction.on_commit(..., robust=True)``: a broker outage never
fails the request; the run stays ``queued`` and the reaper sends it again).

One run at a time per agent: a run starts only while its agent is ``idle`` and no other run of it is
``running``, ``waiting`` or ``paused`` (a partial unique index backs this), the oldest first. Every
time an agent becomes ``idle`` (a run ended, the agent was resumed) its next run is dispatched: a
``paused`` run continues first, then the oldest ``queued`` one.

Worker side (``agents.runtime.executor``): ``run_claim`` → the agent class runs → ``run_complete`` /
``run_fail`` / ``run_park`` (paused) / ``run_wait`` (a person is asked) / ``run_retry_later`` (the LLM upstream
is unavailable: the run stays ``running`` without a worker until its next attempt). People: ``run_create``,
``run_cancel``, ``run_request_decide`` (approvals), ``run_request_answer`` (input, connections).
Housekeeping (the ``maintenance`` queue): ``runs_reap_stale`` (a periodic job), ``runs_requeue_for_worker`` (a
worker that starts again) and the receivers of lifecycle changes.

This module never imports the executor or the tasks (``tasks`` → ``executor`` → ``services``): what both need is in
``runners``, and a task is sent by its registered name.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Subquery
from django.db.models.lookups import Exact
from django.utils import timezone
from jsonschema import Draft202012Validator

from projects import services as project_services
from projects.models import Issue
from syndarix.db import fetch_compiled
from syndarix.exceptions import InvalidInput

from .. import counters, events
from .. import services as agent_services
from ..choices import (
    RUN_ACTIVE_STATUSES,
    RUN_FINISHED_STATUSES,
    AgentStatus,
    RunRequestKind,
    RunRequestStatus,
    RunStatus,
    StepKind,
)
from ..events import EventType
from ..exceptions import AgentTerminated, UsageLimitExceeded
from ..models import AgentInstance, AgentRun, AgentRunRequest
from .exceptions import NoPendingRequest, RequestAlreadyDecided, RunFinished, UnsupportedRequestedSchema
from .runners import agent_class
from .trace import step_record

logger = logging.getLogger(__name__)

S = AgentStatus
R = RunStatus
Q_ = RunRequestStatus

#: Longest ``instruction`` a run accepts (characters).
INSTRUCTION_MAX_LENGTH = 100_000


def _uuid(value) -> Any:
    """``value`` as the ``uuid.UUID`` Django binds for a UUID column (``value`` itself when it is not one's text)."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return value


def _lock_agent(agent_id, *, related: tuple[str, ...] = ("agent_type", "project__workspace")) -> AgentInstance:
    """Lock the agent row (only it: its type and project are read, not locked, else every run of a project or a
    type would wait for every other's claim and completion), ``related`` read with it.

    Raises ``AgentInstance.DoesNotExist``. The SQL is compiled once per process (``syndarix.db.fetch_compiled``)."""
    rows = fetch_compiled(("runtime.lock_agent", related), lambda: AgentInstance.objects.select_for_update(
        of=("self",)).select_related(*related).filter(pk=agent_id), [_uuid(agent_id)])
    if not rows:
        raise AgentInstance.DoesNotExist(f"No agent {agent_id}.")
    return rows[0]


def _lock_run_agent(run_id) -> AgentInstance:
    """Find run ``run_id``'s agent and lock it (as ``_lock_agent``) in one statement.

    Raises ``AgentInstance.DoesNotExist`` when there is no such run."""
    def build():
        agent_id = Subquery(AgentRun.objects.filter(pk=run_id).order_by().values("agent_id")[:1])
        return AgentInstance.objects.select_for_update(of=("self",)).select_related(
            "agent_type", "project__workspace").filter(pk=agent_id)

    rows = fetch_compiled("runtime.lock_run_agent", build, [_uuid(run_id)])
    if not rows:
        raise AgentInstance.DoesNotExist(f"No run {run_id}.")
    return rows[0]


def _lock_run(run_id) -> AgentRun:
    """Lock and read run ``run_id``; raises ``AgentRun.DoesNotExist``."""
    rows = fetch_compiled("runtime.lock_run", lambda: AgentRun.objects.select_for_update().filter(pk=run_id),
                          [_uuid(run_id)])
    if not rows:
        raise AgentRun.DoesNotExist(f"No run {run_id}.")
    return rows[0]


def _run_ahead(run: AgentRun) -> str | None:
    """The status of what goes before queued ``run``: another active run of its agent (``running``, ``waiting``,
    ``paused``), else an older queued one (``queued``), else ``None``. One query, compiled once per process."""
    def build():
        return AgentRun.objects.filter(
            Q(agent_id=run.agent_id) & (Q(status__in=RUN_ACTIVE_STATUSES) | Q(status=R.QUEUED,
                                                                                created_at__lt=run.created_at))
        ).order_by(Exact(F("status"), R.QUEUED)).values_list("status", flat=True)[:1]  # false (active) first

    params = [_uuid(run.agent_id), *RUN_ACTIVE_STATUSES, run.created_at, R.QUEUED, R.QUEUED]
    found = fetch_compiled("runtime.run_ahead", build, params)
    return found[0] if found else None


def _save(run: AgentRun, *fields: str) -> None:
    """Save ``fields`` of ``run``; a saved ``status`` emits its event (``run.queued`` … ``run.cancelled``) in the same
    transaction."""
    run.save(update_fields=[*fields, "updated_at"])
    if "status" in fields:
        events.run_changed(run)


def _transition(agent: AgentInstance, target: str, run: AgentRun, reason: str, actor=None,
                also: dict[str, Any] | None = None) -> AgentInstance:
    """Move ``agent`` (locked in this transaction, ``_lock_agent``) through the lifecycle guard for ``run``; the
    ledger row names the run; ``also``: more of the agent's fields written by the same ``UPDATE``. The services call
    it last in their transactions where they can: it updates the project's counter row, which every run of the
    project shares, so its lock is held for the shortest time."""
    return agent_services.agent_transition(agent, target, actor=actor, reason=f"run {run.pk}: {reason}", run=run,
                                           locked=True, also=also)


# --- Dispatch ------------------------------------------------------------------------------------------


def _after_commit(func, *args) -> None:
    """Call ``func(*args)`` once the transaction commits; a failure is logged, never raised (a broker outage must
    not fail the request whose transaction already committed)."""

    def callback() -> None:
        func(*args)

    transaction.on_commit(callback, robust=True)


def _send(run_id: str, task_id: str, eta=None) -> None:
    """Send the run's task (with ``eta``: not before then). In eager mode (``CELERY_TASK_ALWAYS_EAGER``, debugging)
    a task with an ETA would run at once, ignoring it: it is left to the reaper, which sends it when it is due."""
    execute_run = current_app.tasks["agents.runtime.tasks.execute_run"]  # registered by the tasks module
    if eta is not None and execute_run.app.conf.task_always_eager:
        logger.info("Eager mode: run %s tries again at %s when the reaper sends it", run_id, eta.isoformat())
        return
    execute_run.apply_async(args=[run_id], task_id=task_id, **({"eta": eta} if eta is not None else {}))


def _dispatch(run: AgentRun) -> None:
    """Record a new task id on ``run`` and send its task after the transaction commits."""
    run.task_id = str(uuid.uuid4())
    _save(run, "task_id")
    _after_commit(_send, str(run.pk), run.task_id)


def _next_run(agent: AgentInstance) -> AgentRun | None:
    """With ``agent`` locked: the run to start now — none unless the agent is ``idle``; its paused run, else its
    oldest queued run."""
    if agent.status != S.IDLE:
        return None
    active = agent.runs.filter(status__in=RUN_ACTIVE_STATUSES).first()
    if active is not None:
        return active if active.status == R.PAUSED else None
    return agent.runs.filter(status=R.QUEUED).order_by("created_at", "pk").first()


def _dispatch_next_locked(agent: AgentInstance) -> AgentRun | None:
    """With ``agent`` locked: dispatch ``_next_run``; returns it (or ``None``)."""
    run = _next_run(agent)
    if run is not None:
        _dispatch(_lock_run(run.pk))
    return run


def run_dispatch_next(agent_id) -> AgentRun | None:
    """Start the agent's next run if the agent is ``idle`` and free: its paused run first, else its oldest
    queued run. Returns the run dispatched, or ``None``."""
    unfinished = fetch_compiled("runtime.unfinished_run", lambda: AgentRun.objects.filter(agent_id=agent_id).exclude(
        status__in=RUN_FINISHED_STATUSES).values_list("pk", flat=True)[:1], [_uuid(agent_id), *RUN_FINISHED_STATUSES])
    if not unfinished:
        # Nothing to start, found without a lock (every resume comes here); a run queued after this look dispatches
        # itself, as ``run_create`` does for an idle agent.
        return None
    with transaction.atomic():
        try:
            agent = _lock_agent(agent_id)
        except AgentInstance.DoesNotExist:
            return None
        return _dispatch_next_locked(agent)


# --- People: create, cancel, answer -----------------------------------------------------------------------


def run_create(
    *,
    agent: AgentInstance,
    instruction: str = "",
    issue: Issue | None = None,
    actor=None,
    request_id: str | None = None,
) -> tuple[AgentRun, bool]:
    """Queue a run for ``agent``; it starts when the agent is ``idle`` and its earlier runs are done.

    With ``issue`` (an issue of the agent's project) the agent becomes the issue's assignee.

    Args:
        instruction: what to do (text, at most ``INSTRUCTION_MAX_LENGTH`` characters).
        actor: the requesting user (``requested_by``).
        request_id: an ``Idempotency-Key``; repeating it for the agent returns the first run.

    Returns ``(run, created)``; ``created`` is false on a replay.

    Raises:
        AgentsDisabled: ``AGENTS_ENABLED`` is false (503).
        InvalidInput: neither an instruction nor an issue, a NUL character, an overlong
            instruction, or an issue of another project (400).
        NotRunnable: the agent has no runnable class and no template (400).
        AgentTerminated: the agent is terminated (409 ``agent_terminated``).
    """
    agent_services.ensure_agents_enabled()
    if not isinstance(instruction, str) or "\x00" in instruction:
        raise InvalidInput("instruction must be text without NUL characters.", field="instruction")
    if len(instruction) > INSTRUCTION_MAX_LENGTH:
        raise InvalidInput(f"instruction is longer than {INSTRUCTION_MAX_LENGTH} characters.", field="instruction")
    if not instruction.strip() and issue is None:
        raise InvalidInput("Send an instruction, an issue_id, or both.", field="instruction")
    if issue is not None and issue.project_id != agent.project_id:
        raise InvalidInput("The issue belongs to another project.", field="issue_id", code="does_not_exist")
    with transaction.atomic():
        locked = _lock_agent(agent.pk)
        if request_id:
            replay = locked.runs.filter(request_id=request_id).first()
            if replay is not None:
                return replay, False
        if locked.status == S.TERMINATED:
            raise AgentTerminated("run")
        agent_class(locked)  # refuses an agent nothing can run
        run = AgentRun.objects.create(
            agent=locked, issue=issue, instruction=instruction, requested_by=agent_services._user(actor),
            request_id=request_id,
        )
        events.run_changed(run)
        if issue is not None and issue.assigned_agent_id != locked.pk:
            project_services.issue_update(issue, data={"assigned_agent": locked})
        if _next_run(locked) == run:  # else it waits its turn: the run ahead of it was sent already
            _dispatch(run)
    return run, True


def _cancel_locked(agent: AgentInstance, run: AgentRun, *, message: str, actor=None) -> AgentRun:
    """Cancel ``run`` (agent and run locked): its pending requests too; a waiting agent goes back to idle,
    a working one too (its worker stops at the next step boundary and changes nothing more)."""
    previous = run.status
    run.status = R.CANCELLED
    run.finished_at = timezone.now()
    run.error_code, run.error_message = "cancelled", message
    run.retry_at = None
    _save(run, "status", "finished_at", "error_code", "error_message", "retry_at")
    for request in run.requests.filter(status=Q_.PENDING):
        request.status, request.decided_at = Q_.CANCELLED, timezone.now()
        request.save(update_fields=["status", "decided_at"])
        events.request_event(EventType.REQUEST_DECIDED, request, project_id=agent.project_id, agent_id=agent.pk)
    if previous in (R.RUNNING, R.WAITING) and agent.status in (S.WORKING, S.WAITING):
        _transition(agent, S.IDLE, run, "cancelled", actor=actor)
    counters.run_finished(agent, status=R.CANCELLED)  # after the transition: its counter row first
    if run.task_id:
        _after_commit(_revoke, run.task_id)
    return run


def _revoke(task_id: str) -> None:
    from syndarix.celery import app

    app.control.revoke(task_id)


def run_cancel(run: AgentRun, *, actor=None) -> AgentRun:
    """Cancel ``run``: a queued, paused or waiting run at once, and a running one waiting out an LLM outage; a
    running one stops at its next step boundary (no upstream call is made after this commits, though one already
    in flight completes and is metered) and its agent goes back to ``idle``. Its Celery task is revoked and its
    pending requests cancelled. Cancelling a cancelled run changes nothing.

    Returns the run. Raises ``RunFinished`` (409 ``run_finished``) for a run that succeeded or failed.
    """
    with transaction.atomic():
        agent = _lock_agent(run.agent_id)
        locked = _lock_run(run.pk)
        if locked.status == R.CANCELLED:
            return locked
        if locked.status in RUN_FINISHED_STATUSES:
            raise RunFinished(locked.status)
        who = getattr(actor, "username", None) or "the system"
        return _cancel_locked(agent, locked, message=f"Cancelled by {who}.", actor=actor)


def _continue_if_answered(run: AgentRun) -> None:
    """A waiting run whose requests are all answered continues on a worker."""
    if run.status == R.WAITING and not run.requests.filter(status=Q_.PENDING).exists():
        _dispatch(run)


def run_request_decide(
    request: AgentRunRequest, *, decision: str, reason: str = "", actor=None, request_id: str | None = None
) -> AgentRunRequest:
    """Approve or deny a pending approval; the run continues on a worker (``waiting → working``): an
    approved tool call is executed there once, a denied one answered to the model with the refusal.

    Args:
        decision: ``approve`` or ``deny``.
        request_id: an ``Idempotency-Key``; repeating it returns the request as it is.

    Returns the decided request.

    Raises:
        InvalidInput: an unknown decision (400).
        RequestAlreadyDecided: it was decided (or cancelled) before (409 ``already_decided``).
    """
    if decision not in ("approve", "deny"):
        raise InvalidInput("decision must be 'approve' or 'deny'.", field="decision")
    with transaction.atomic():
        agent = _lock_agent(request.run.agent_id)
        run = _lock_run(request.run_id)
        locked = AgentRunRequest.objects.select_for_update().get(pk=request.pk)
        if request_id and locked.request_id == request_id:
            return locked
        if not locked.is_pending:
            raise RequestAlreadyDecided(locked.status)
        locked.status = Q_.APPROVED if decision == "approve" else Q_.DENIED
        locked.reason, locked.decided_by, locked.decided_at = reason, agent_services._user(actor), timezone.now()
        locked.request_id = request_id
        locked.save(update_fields=["status", "reason", "decided_by", "decided_at", "request_id"])
        events.request_event(EventType.REQUEST_DECIDED, locked, project_id=agent.project_id, agent_id=agent.pk)
        step_record(
            run.pk, kind=StepKind.APPROVAL, name=locked.tool_name, input={"arguments": locked.arguments},
            output={"decision": locked.status, "reason": reason, "by": getattr(locked.decided_by, "username", None)},
        )
        _continue_if_answered(run)
    return locked


def run_request_answer(
    run: AgentRun, *, content: dict[str, Any] | None = None, action: str = "accept", actor=None,
    request_id: str | None = None,
) -> AgentRunRequest:
    """Answer the run's pending input (``request_input``) or connection (``request_connection``) request; the
    run continues with the answer as the tool result.

    Args:
        content: the answer, validated against the request's ``requested_schema`` (input) or
            ``agents.runtime.tools.client.CONNECTION_OUTCOME_SCHEMA`` (connections); required when ``action`` is
            ``accept``.
        action: ``accept``, ``decline`` or ``cancel`` (MCP elicitation actions).
        request_id: an ``Idempotency-Key``; repeating it returns the answered request.

    Returns the answered request.

    Raises:
        InvalidInput: an unknown action, or content that breaks the schema (400, one error per field
            ``content.<path>``; ``django.core.exceptions.ValidationError``).
        NoPendingRequest: the run waits for no input (409 ``no_pending_input``).
        UnsupportedRequestedSchema: ``accept`` for an input request whose stored schema is not an MCP elicitation
            schema (``agents.runtime.tools.client.requested_schema_errors``; stored before that rule): the answer
            cannot be checked, so only ``decline`` or ``cancel`` (409 ``unsupported_schema``).
    """
    from django.core.exceptions import ValidationError

    from .tools.client import CONNECTION_OUTCOME_SCHEMA, requested_schema_errors

    if action not in ("accept", "decline", "cancel"):
        raise InvalidInput("action must be 'accept', 'decline' or 'cancel'.", field="action")
    with transaction.atomic():
        agent = _lock_agent(run.agent_id)
        locked_run = _lock_run(run.pk)
        kinds = (RunRequestKind.INPUT, RunRequestKind.CONNECTION)
        if request_id:
            replay = locked_run.requests.filter(kind__in=kinds, request_id=request_id).first()
            if replay is not None:
                return replay
        pending = locked_run.requests.select_for_update().filter(kind__in=kinds, status=Q_.PENDING).first()
        if pending is None:
            raise NoPendingRequest()
        if action == "accept":
            if not isinstance(content, dict):
                raise InvalidInput("content must be a JSON object.", field="content")
            schema = pending.requested_schema if pending.kind == RunRequestKind.INPUT else CONNECTION_OUTCOME_SCHEMA
            if pending.kind == RunRequestKind.INPUT and requested_schema_errors(schema):
                raise UnsupportedRequestedSchema()  # stored before the rule: never evaluate what it may hold
            errors: dict[str, list[str]] = {}
            for error in Draft202012Validator(schema or {"type": "object"}).iter_errors(content):
                path = ".".join(["content", *(str(p) for p in error.absolute_path)])
                errors.setdefault(path, []).append(error.message)
            if errors:
                raise ValidationError(errors)
        pending.status = Q_.ANSWERED if action == "accept" else Q_.DECLINED
        pending.response = {"action": action, **({"content": content} if action == "accept" else {})}
        pending.decided_by, pending.decided_at = agent_services._user(actor), timezone.now()
        pending.request_id = request_id
        pending.save(update_fields=["status", "response", "decided_by", "decided_at", "request_id"])
        events.request_event(EventType.REQUEST_DECIDED, pending, project_id=agent.project_id, agent_id=agent.pk)
        step_record(
            locked_run.pk, kind=StepKind.INPUT, name=pending.tool_name,
            input={"message": pending.message, "requestedSchema": pending.requested_schema},
            output={**pending.response, "by": getattr(pending.decided_by, "username", None)},
        )
        _continue_if_answered(locked_run)
    return pending


# --- Worker side ---------------------------------------------------------------------------------------


def run_claim(run_id, *, worker: str = "", task_id: str | None = None) -> AgentRun | None:
    """Take ``run_id`` for execution on this worker, or return ``None`` when it is not this worker's to run.

    Startable: a ``queued`` run that is its agent's oldest, while the agent is ``idle`` and has no other
    active run (a new attempt: ``attempts`` + 1); a ``paused`` run of an ``idle`` agent (resume); a
    ``waiting`` run of a ``waiting`` agent whose requests are all answered (continue); a ``running`` run waiting
    out an LLM outage (``retry_at`` set) of a ``working`` agent, by the task ``task_id`` it was sent again as
    (its next attempt; the agent stays ``working``). Otherwise the agent moves to ``working`` (ledger row naming
    the run); its heartbeat is stamped, the run becomes ``running`` on this worker. Returns the run, its ``agent``
    loaded with the agent's type and project.
    An agent at or over its budget is paused instead (reason ``budget``), the run ``paused`` with
    ``budget_exceeded``. Safe to call for a message delivered twice: only one claim succeeds. Nothing starts
    while ``AGENTS_ENABLED`` is false.
    """
    if not settings.AGENTS_ENABLED:
        if AgentRun.objects.filter(pk=run_id).exists():
            logger.info("Run %s stays as it is: agents are disabled (AGENTS_ENABLED=false).", run_id)
        return None
    with transaction.atomic():
        try:
            agent = _lock_run_agent(run_id)  # the run's agent, found and locked in one statement
        except AgentInstance.DoesNotExist:  # no such run
            return None
        run = _lock_run(run_id)
        attempt = 0
        if run.status == R.QUEUED:
            if agent.status != S.IDLE:
                return None
            # One look for what goes first: another active run of the agent, or an older queued one.
            ahead = _run_ahead(run)
            if ahead in RUN_ACTIVE_STATUSES:
                return None
            if ahead == R.QUEUED:
                _dispatch_next_locked(agent)  # the older run goes first
                return None
            attempt = run.attempts + 1
            verb = "started" if attempt == 1 else f"started again (attempt {attempt})"
        elif run.status == R.PAUSED and agent.status == S.IDLE:
            verb = "resumed"
        elif run.status == R.WAITING and agent.status == S.WAITING and not run.requests.filter(
                status=Q_.PENDING).exists():
            verb = "continued"
        elif (run.status == R.RUNNING and run.retry_at is not None and agent.status == S.WORKING
              and task_id is not None and task_id == run.task_id):
            verb = ""  # the next attempt after an LLM outage: the agent is working already
        else:
            return None
        exceeded = agent.budget_exceeded()
        if exceeded:
            if agent.status != S.PAUSED:
                _transition(agent, S.PAUSED, run, f"budget: {exceeded}")
            run.status, run.error_code, run.error_message = R.PAUSED, "budget_exceeded", exceeded
            _save(run, "status", "error_code", "error_message")
            return None
        # A run parked before it ever started (its agent was over budget) starts its first attempt when resumed.
        run.attempts = attempt or max(run.attempts, 1)
        now = timezone.now()
        task = run.instruction.strip().splitlines()[0][:200] if run.instruction.strip() else ""
        beat = {"last_heartbeat_at": now, "current_task": task or (run.issue.title if run.issue_id else "")}
        run.status, run.worker, run.error_code, run.error_message = R.RUNNING, worker[:200], "", ""
        run.started_at = run.started_at or now
        run.retry_at = None
        _save(run, "status", "worker", "error_code", "error_message", "started_at", "attempts", "retry_at")
        if verb:  # the heartbeat and the task ride on the transition's UPDATE
            agent = _transition(agent, S.WORKING, run, verb, also=beat)
        else:
            AgentInstance.objects.filter(pk=agent.pk).update(**beat)
    run.agent = agent  # with its type and project: what the executor runs it with
    return run


def _lock_running(run: AgentRun) -> tuple[AgentInstance, AgentRun] | tuple[None, None]:
    """Lock the run's agent and the run; ``(agent, run)`` when the run is still ``running`` under the task that
    claimed it (``run.task_id``), else ``(None, None)``: it was cancelled or reaped meanwhile, or reaped and taken
    over by another worker (a new task id), and this worker changes nothing."""
    agent = _lock_agent(run.agent_id, related=("agent_type",))  # what ending a run reads of the agent's relations
    locked = _lock_run(run.pk)
    mine = locked.status == R.RUNNING and locked.task_id == run.task_id
    return (agent, locked) if mine else (None, None)


def run_complete(run: AgentRun, result: Any) -> AgentRun:
    """End ``run`` as ``succeeded`` with ``result`` (JSON); the agent goes back to ``idle`` with one more
    ``tasks_completed`` (a run its agent was paused or terminated around keeps the agent's status)."""
    with transaction.atomic():
        agent, locked = _lock_running(run)
        if locked is None:
            return AgentRun.objects.get(pk=run.pk)
        locked.status, locked.result, locked.finished_at = R.SUCCEEDED, result, timezone.now()
        _save(locked, "status", "result", "finished_at")
        try:
            agent_services.usage_increment(agent.pk, tasks_completed=1)
        except UsageLimitExceeded:  # 2^63 - 1 tasks: the run still succeeded, it just cannot be counted
            logger.warning("Agent %s: tasks_completed is at its limit; run %s is not counted", agent.pk, run.pk)
            counted = 0
        else:
            counted = 1
        if agent.status == S.WORKING:
            agent = _transition(agent, S.IDLE, locked, "succeeded")
        # Last: the project's usage row is locked from here to the commit.
        counters.run_finished(agent, status=R.SUCCEEDED, tasks_completed=counted)
    return locked


def run_fail(run: AgentRun, *, code: str, message: str) -> AgentRun:
    """End ``run`` as ``failed`` with ``code`` and ``message``; the agent records ``last_error`` and goes back
    to ``idle``."""
    with transaction.atomic():
        agent, locked = _lock_running(run)
        if locked is None:
            return AgentRun.objects.get(pk=run.pk)
        locked.status, locked.finished_at = R.FAILED, timezone.now()
        locked.error_code, locked.error_message = code, message[:10_000]
        _save(locked, "status", "finished_at", "error_code", "error_message")
        AgentInstance.objects.filter(pk=agent.pk).update(last_error=f"run {run.pk} failed: {code}: {message}"[:10_000])
        if agent.status == S.WORKING:
            _transition(agent, S.IDLE, locked, f"failed ({code})")
        counters.run_finished(agent, status=R.FAILED)
    return locked


def run_park(run: AgentRun) -> AgentRun:
    """Stop ``run`` at a step boundary because its agent was paused (or went over budget): the run becomes
    ``paused`` (``budget_exceeded`` when over budget) and continues from its checkpoint when the agent is
    resumed. An agent that was resumed before the worker noticed gets the run dispatched again."""
    with transaction.atomic():
        agent, locked = _lock_running(run)
        if locked is None:
            return AgentRun.objects.get(pk=run.pk)
        return _park_locked(agent, locked)


def _park_locked(agent: AgentInstance, run: AgentRun) -> AgentRun:
    """``run_park`` with the agent and the running run locked (an outage's wait ends with it too)."""
    exceeded = agent.budget_exceeded()
    if agent.status == S.TERMINATED:
        return _cancel_locked(agent, run, message="The agent was terminated.")
    if agent.status in (S.WORKING, S.WAITING):
        _transition(agent, S.PAUSED, run, f"budget: {exceeded}" if exceeded else "paused")
    if run.retry_at is not None:  # its next attempt was sent with an ETA: take it back
        _after_commit(_revoke, run.task_id)
    run.status = R.PAUSED
    run.error_code, run.error_message = ("budget_exceeded", exceeded) if exceeded else ("", "")
    run.retry_at, run.retry_since, run.retry_count, run.retry_error = None, None, 0, ""
    _save(run, "status", "error_code", "error_message", "retry_at", "retry_since", "retry_count", "retry_error")
    if agent.status == S.IDLE:
        _dispatch_next_locked(agent)
    return run


def run_retry_later(run: AgentRun, *, retry_at, since, failures: int, error: str) -> AgentRun | None:
    """The LLM upstream is unavailable: ``run`` waits for its next attempt at ``retry_at`` without holding a worker.

    The run stays ``running`` (its agent ``working``) with ``retry_at``, ``retry_since`` (``since``: when the
    outage began for it), ``retry_count`` (``failures``) and ``retry_error`` (``error``); its task is sent again
    under a new task id with that ETA after the transaction commits (``run_claim`` takes it then). Pause, cancel
    and terminate act on such a run at once (``on_agent_transitioned``, ``run_cancel``); the reaper sends it again
    when its message is lost. An agent paused or terminated meanwhile gets the run parked or cancelled now.

    Returns the run, or ``None`` when it is no longer this worker's (cancelled, reaped).
    """
    with transaction.atomic():
        agent, locked = _lock_running(run)
        if locked is None:
            return None
        if agent.status != S.WORKING:
            return _park_locked(agent, locked)
        locked.retry_at, locked.retry_since, locked.retry_count = retry_at, since, failures
        locked.retry_error, locked.worker = error[:2000], ""
        locked.task_id = str(uuid.uuid4())
        _save(locked, "retry_at", "retry_since", "retry_count", "retry_error", "worker", "task_id")
        _after_commit(_send, str(locked.pk), locked.task_id, retry_at)
    logger.info("Run %s waits out an LLM outage (attempt %d failed: %s); next attempt at %s", run.pk, failures,
                error, retry_at.isoformat())
    return locked


def run_wait(run: AgentRun, *, kind: str, tool_name: str, tool_call_id: str = "", arguments: Any = None,
             message: str = "", requested_schema: dict | None = None,
             existing: AgentRunRequest | None = None) -> AgentRunRequest | None:
    """Put ``run`` in ``waiting`` with a pending request to a person (``existing``, one still pending from before a
    pause, else a new one); the agent goes ``working → waiting`` and the worker is freed (the run continues
    from its checkpoint once the request is answered).

    Returns the request, or ``None`` when the run is no longer running (cancelled meanwhile). An agent
    paused meanwhile gets the run ``paused`` with the request still pending.
    """
    with transaction.atomic():
        agent, locked = _lock_running(run)
        if locked is None:
            return None
        request = existing
        if request is None:
            request = AgentRunRequest.objects.create(
                run=locked, kind=kind, tool_name=tool_name, tool_call_id=tool_call_id, arguments=arguments or {},
                message=message, requested_schema=requested_schema,
            )
            events.request_event(EventType.REQUEST_CREATED, request, project_id=agent.project_id, agent_id=agent.pk)
        if agent.status == S.WORKING:
            _transition(agent, S.WAITING, locked, f"waiting for {RunRequestKind(kind).label.lower()} ({tool_name})")
            locked.status = R.WAITING
        else:
            locked.status = R.PAUSED
        _save(locked, "status")
        if agent.status == S.IDLE:
            _dispatch_next_locked(agent)
    return request


# --- Housekeeping: lifecycle receivers and the reaper ----------------------------------------------------


def on_agent_transitioned(sender, *, agent: AgentInstance, source: str, target: str, **kwargs) -> None:
    """After a committed lifecycle change: ``idle`` → dispatch the next run; ``paused`` from ``waiting`` →
    the waiting run is ``paused``; ``paused`` from ``working`` → a run waiting out an LLM outage is ``paused`` at
    once; ``terminated`` → every unfinished run is ``cancelled``."""
    if target == S.IDLE:
        run_dispatch_next(agent.pk)
    elif target == S.PAUSED and source == S.WORKING:
        with transaction.atomic():
            locked = _lock_agent(agent.pk)
            retrying = AgentRun.objects.select_for_update().filter(
                agent_id=agent.pk, status=R.RUNNING, retry_at__isnull=False).first()
            if retrying is not None and locked.status == S.PAUSED:
                _park_locked(locked, retrying)
    elif target == S.PAUSED and source == S.WAITING:
        with transaction.atomic():
            _lock_agent(agent.pk)
            for run in AgentRun.objects.select_for_update().filter(agent_id=agent.pk, status=R.WAITING):
                run.status = R.PAUSED
                _save(run, "status")
    elif target == S.TERMINATED:
        runs_cancel_for_terminated(agent.pk)


def runs_cancel_for_terminated(agent_id) -> int:
    """Cancel every unfinished run of a terminated agent; returns how many."""
    with transaction.atomic():
        agent = _lock_agent(agent_id)
        if agent.status != S.TERMINATED:
            return 0
        runs = list(agent.runs.select_for_update().exclude(status__in=RUN_FINISHED_STATUSES).order_by("created_at"))
        for run in runs:
            _cancel_locked(agent, run, message="The agent was terminated.")
    return len(runs)


@dataclass
class ReapReport:
    """What one pass of ``runs_reap_stale`` did: run ids per outcome."""

    requeued: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    dispatched: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)


def runs_reap_stale(*, now=None) -> ReapReport:
    """The periodic job (``celery beat``): recover runs whose worker is gone, and runs nobody started.

    - A ``running`` run whose agent's ``last_heartbeat_at`` is older than ``AGENT_HEARTBEAT_TIMEOUT_SECONDS``
      lost its worker: while ``attempts < AGENT_RUN_MAX_ATTEMPTS`` it is queued again (it continues from
      its checkpoint) and its agent goes back to ``idle``; then it fails with ``heartbeat_lost`` (the agent
      ``idle`` with ``last_error``). A run of an agent paused meanwhile becomes ``paused``.
    - Unfinished runs of terminated agents are cancelled.
    - Idle agents with a queued or paused run, and waiting runs whose requests are all answered, are
      dispatched again (a message lost by the broker never strands a run).
    - A ``running`` run waiting out an LLM outage holds no worker and has no heartbeat: it is never reaped;
      when its next attempt is ``AGENT_HEARTBEAT_TIMEOUT_SECONDS`` overdue (its message was lost) it is sent again.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.AGENT_HEARTBEAT_TIMEOUT_SECONDS)
    report = ReapReport()
    stale = AgentRun.objects.filter(status=R.RUNNING, retry_at__isnull=True).filter(
        Q(agent__last_heartbeat_at__lt=cutoff) | Q(agent__last_heartbeat_at__isnull=True, updated_at__lt=cutoff)
    )
    for run_id in stale.values_list("pk", flat=True):
        _reap(run_id, report, cutoff=cutoff)
    for run_id in AgentRun.objects.filter(status=R.RUNNING, retry_at__lt=cutoff).values_list("pk", flat=True):
        with transaction.atomic():
            agent_id = AgentRun.objects.filter(pk=run_id).values_list("agent_id", flat=True).first()
            _lock_agent(agent_id)
            run = _lock_run(run_id)
            if run.status == R.RUNNING and run.retry_at is not None and run.retry_at < cutoff:
                _dispatch(run)
                report.retried.append(str(run_id))
    reaped = set(report.requeued)  # their agents' return to idle sent them already
    for agent_id in set(
        AgentRun.objects.filter(agent__status=S.TERMINATED).exclude(status__in=RUN_FINISHED_STATUSES)
        .values_list("agent_id", flat=True)
    ):
        report.cancelled += [str(agent_id)] * runs_cancel_for_terminated(agent_id)
    idle_with_work = AgentRun.objects.filter(agent__status=S.IDLE, status__in=(R.QUEUED, R.PAUSED)).exclude(
        pk__in=reaped)
    for agent_id in set(idle_with_work.values_list("agent_id", flat=True)):
        run = run_dispatch_next(agent_id)
        if run is not None:
            report.dispatched.append(str(run.pk))
    answered = AgentRun.objects.filter(status=R.WAITING, agent__status=S.WAITING).exclude(
        requests__status=Q_.PENDING
    )
    for run_id in answered.values_list("pk", flat=True):
        with transaction.atomic():
            run = _lock_run(run_id)
            _continue_if_answered(run)
            report.dispatched.append(str(run_id))
    return report


def runs_requeue_for_worker(worker: str) -> ReapReport:
    """A worker (re)started: its node name's ``running`` runs lost their executor with the previous process, so
    they are recovered at once as the reaper would recover them after the heartbeat timeout (queued again and
    continued from their checkpoint, or failed with ``heartbeat_lost`` once their attempts are spent). Runs waiting
    out an LLM outage hold no worker and are left alone. Returns the report."""
    report = ReapReport()
    if not worker:
        return report
    mine = AgentRun.objects.filter(status=R.RUNNING, retry_at__isnull=True, worker=worker[:200])
    for run_id in mine.values_list("pk", flat=True):
        _reap(run_id, report, worker=worker[:200])
    return report


def _reap(run_id, report: ReapReport, *, cutoff=None, worker: str | None = None) -> None:
    """Recover a running run whose worker is gone: its heartbeat is older than ``cutoff``, or its ``worker`` is the
    one that just started again."""
    with transaction.atomic():
        agent_id = AgentRun.objects.filter(pk=run_id).values_list("agent_id", flat=True).first()
        agent = _lock_agent(agent_id)
        run = _lock_run(run_id)
        heartbeat = agent.last_heartbeat_at
        if run.status != R.RUNNING or run.retry_at is not None:
            return
        if worker is not None and run.worker != worker:
            return
        if cutoff is not None and heartbeat is not None and heartbeat >= cutoff:
            return
        lost = (f"heartbeat lost (worker {run.worker or 'unknown'})" if worker is None
                else f"worker {worker} restarted")
        if agent.status == S.TERMINATED:
            _cancel_locked(agent, run, message="The agent was terminated.")
            report.cancelled.append(str(run_id))
        elif run.attempts < settings.AGENT_RUN_MAX_ATTEMPTS:
            run.status = R.PAUSED if agent.status == S.PAUSED else R.QUEUED
            run.error_message = f"{lost}; attempt {run.attempts} of {settings.AGENT_RUN_MAX_ATTEMPTS}"
            _save(run, "status", "error_message")
            (report.paused if run.status == R.PAUSED else report.requeued).append(str(run_id))
            if agent.status == S.WORKING:
                _transition(agent, S.IDLE, run, f"{lost}; queued again")
        else:
            run.status, run.finished_at = R.FAILED, timezone.now()
            run.error_code = "heartbeat_lost"
            run.error_message = f"{lost} after {run.attempts} attempt(s)"
            _save(run, "status", "finished_at", "error_code", "error_message")
            AgentInstance.objects.filter(pk=agent.pk).update(
                last_error=f"run {run.pk} failed: heartbeat_lost: {run.error_message}"
            )
            report.failed.append(str(run_id))
            if agent.status in (S.WORKING, S.WAITING):
                _transition(agent, S.IDLE, run, "failed (heartbeat_lost)")
            counters.run_finished(agent, status=R.FAILED)
