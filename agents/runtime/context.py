"""What an agent class's ``run(ctx)`` works with: the ``RunContext`` and its metered LLM client.

Every LLM call a run makes goes through ``ctx.llm.chat`` (``MeteredLLM``): it stops the run when a
stop was requested (so no upstream call is made after a pause, a termination or a cancel commits),
gives its database connection back to the pool for the length of the call, calls the provider
(``aiservices.llm``), and records an ``llm_call`` step with the upstream's token usage and the cost from the
price table (``aiservices.prices``, cached per process; an unknown model costs 0 and logs a warning). The step's
one statement (``trace.step_record``) adds both to the run and the agent and reads back whether the run must stop
and whether the agent is now over budget, which pauses it (ledger reason ``budget``).

An upstream outage (a failed connection, a timeout, 429 or 5xx, after the client's own quick retries) does not
fail the run: the failed call is recorded, the run waits for its next attempt without holding a worker
(``services.run_retry_later``: exponential backoff with jitter, or the upstream's ``Retry-After``), and only
when the upstream has been unavailable to it for ``AGENT_LLM_OUTAGE_SECONDS`` does it fail with
``upstream_unavailable``. Any other refusal (4xx) or a malformed answer fails it at once (``upstream_error``).
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from aiservices.exceptions import UpstreamError, UpstreamHTTPError, UpstreamTimeout, UpstreamUnreachable
from aiservices.llm import ChatCompletion, ChatRequest, get_chat_provider
from aiservices.models import ModelPrice
from aiservices.prices import price_for
from syndarix.exceptions import InvalidInput

from .. import services as agent_services
from ..choices import AgentStatus, RunStatus, StepKind
from ..contexts import services as contexts
from ..exceptions import UsageLimitExceeded
from ..models import AgentInstance, AgentRun
from . import services
from .exceptions import RunFailure, RunInterrupted
from .tools.registry import ToolCall
from .trace import StepRecorded, step_record

logger = logging.getLogger(__name__)

#: A stop check may ride on the answer of the run's last step when that answer is younger than this (seconds).
STOP_CHECK_FRESH_SECONDS = 1.0


def is_outage(exc: UpstreamError) -> bool:
    """True when ``exc`` means the upstream is unavailable for now (the run waits and tries again): it could not
    be reached, it did not answer in time, or it answered 429 or 5xx."""
    if isinstance(exc, UpstreamTimeout | UpstreamUnreachable):
        return True
    return isinstance(exc, UpstreamHTTPError) and exc.status is not None and (exc.status == 429 or exc.status >= 500)


def outage_delay(failures: int, retry_after: float | None = None) -> float:
    """Seconds to wait after the ``failures``-th failed attempt (1, 2, ...) of an outage: the upstream's
    ``Retry-After`` when it sent one (plus up to 10 % jitter), else exponential backoff with jitter, half to all
    of ``AGENT_LLM_OUTAGE_BACKOFF_SECONDS`` × 2^(failures - 1), at most ``AGENT_LLM_OUTAGE_BACKOFF_MAX_SECONDS``."""
    if retry_after is not None and retry_after >= 0:
        return retry_after * random.uniform(1.0, 1.1)
    ceiling = min(settings.AGENT_LLM_OUTAGE_BACKOFF_MAX_SECONDS,
                  settings.AGENT_LLM_OUTAGE_BACKOFF_SECONDS * 2 ** max(0, failures - 1))
    return ceiling * random.uniform(0.5, 1.0)


def outage_retry_at(*, since: datetime, failures: int, retry_after: float | None, now: datetime) -> datetime | None:
    """When the run tries again after its ``failures``-th failed attempt of an outage that began at ``since``:
    ``now + outage_delay(...)``, at the latest when ``AGENT_LLM_OUTAGE_SECONDS`` have passed since ``since``;
    ``None`` once they have (the run fails with ``upstream_unavailable``)."""
    deadline = since + timedelta(seconds=settings.AGENT_LLM_OUTAGE_SECONDS)
    if now >= deadline:
        return None
    return min(now + timedelta(seconds=outage_delay(failures, retry_after)), deadline)


def price(model: str) -> ModelPrice | None:
    """The price table's row for ``model`` (``aiservices.prices.price_for``), or ``None`` (logged: such calls
    cost 0)."""
    row = price_for(model)
    if row is None:
        logger.warning("No price for model '%s' (aiservices.ModelPrice): its calls are recorded at cost 0.", model)
    return row


def release_connection() -> None:
    """Give this thread's database connection back to the pool (``DATABASES`` ``OPTIONS["pool"]``) while it waits
    on something slow, outside a transaction; the next query takes one again. Without a pool it is kept: closing
    it would only cost a new connection."""
    pooled = getattr(connection, "pool", None) is not None
    if pooled and connection.connection is not None and not connection.in_atomic_block:
        connection.close()


class MeteredLLM:
    """``ctx.llm``: the one way a run calls the LLM (see the module docstring)."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self._recorded = 0  # messages already shown in an earlier step's input

    @property
    def default_model(self) -> str:
        """The agent's ``config["model"]``, else the template's ``llm.model``, else ``AGENT_LLM_MODEL``."""
        config_model = self._ctx.agent.config.get("model") if isinstance(self._ctx.agent.config, dict) else None
        template_model = (self._ctx.template.get("llm") or {}).get("model") if self._ctx.template else None
        return config_model or template_model or settings.AGENT_LLM_MODEL

    def chat(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None,
             model: str | None = None, **params: Any) -> ChatCompletion:
        """Ask the model for the next message and meter the call.

        Args:
            messages: the conversation in the OpenAI Chat Completions format.
            tools: OpenAI ``tools`` entries (``Tool.openai_function()``), or ``None``.
            model: default ``default_model``.
            params: more request keys (``temperature``, ``max_tokens``, ...).

        Returns the ``aiservices.llm.ChatCompletion``; its step's ``message`` is the assistant message (the agent
        loop's checkpoint).

        Raises:
            RunInterrupted: a stop was requested before the call (nothing is sent); or ``RETRYING``: the upstream
                is unavailable and the run now waits for its next attempt without a worker (the failed call is
                recorded as a step with its error, ``attempt`` and ``retry_at``).
            RunFailure: the upstream stayed unavailable for ``AGENT_LLM_OUTAGE_SECONDS`` (``upstream_unavailable``)
                or refused the call (``upstream_error``); the failed call is recorded as a step with its error. Or
                the usage it reported cannot be counted (``usage_limit_exceeded``: past the agent's counters' range).
        """
        self._ctx.stop_if_requested()
        request = ChatRequest(model=model or self.default_model, messages=messages, tools=tools or [], params=params)
        shown = {
            "model": request.model, "messages": messages[self._recorded:], "message_count": len(messages),
            "tools": [t["function"]["name"] for t in request.tools if t.get("type") == "function"],
            **({"params": params} if params else {}),
        }
        started = time.monotonic()
        release_connection()  # a run waiting on its LLM holds no database connection
        try:
            provider = get_chat_provider()
            shown["provider"] = provider.name
            completion = provider.complete(request, request_id=f"{self._ctx.run.pk}-{self._ctx.run.steps_completed}")
        except UpstreamError as exc:
            self._upstream_failed(exc, name=request.model, shown=shown, started=started)
        self._recorded = len(messages)
        row = price(completion.model) or (price(request.model) if request.model != completion.model else None)
        cost = row.cost(prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens) if (
            row) else Decimal("0")
        output = {"message": completion.message, "finish_reason": completion.finish_reason, "model": completion.model,
                  "attempts": completion.attempts, "usage_reported": completion.usage_reported}
        try:
            self._ctx.record_step(
                StepKind.LLM_CALL, name=completion.model, input=shown, output=output, duration_ms=_ms(started),
                prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens, cost=cost,
                message=completion.message, clear_retry=bool(self._ctx.run.retry_count),
            )
        except (InvalidInput, UsageLimitExceeded) as exc:  # usage no counter can hold: nothing was recorded
            raise RunFailure("usage_limit_exceeded", exc.message) from exc
        self._ctx.run.retry_count, self._ctx.run.retry_since = 0, None
        self._ctx.enforce_budget()
        return completion

    def _upstream_failed(self, exc: UpstreamError, *, name: str, shown: dict[str, Any], started: float) -> None:
        """Record the failed call and stop the run: it waits out an outage, or fails (see ``chat``)."""
        run = self._ctx.run
        if not is_outage(exc):
            failure = RunFailure("upstream_error", exc.message)
            self._ctx.record_step(StepKind.LLM_CALL, name=name, input=shown, duration_ms=_ms(started),
                                  error={"code": failure.code, "message": failure.message})
            raise failure from exc
        now = timezone.now()
        since, failures = run.retry_since or now, run.retry_count + 1
        retry_at = outage_retry_at(since=since, failures=failures, retry_after=getattr(exc, "retry_after", None),
                                   now=now)
        error = {"code": "upstream_unavailable", "message": exc.message, "attempt": failures,
                 "retry_at": retry_at.isoformat() if retry_at else None}
        self._ctx.record_step(StepKind.LLM_CALL, name=name, input=shown, duration_ms=_ms(started), error=error)
        if retry_at is None:
            waited = (now - since).total_seconds()
            raise RunFailure(
                "upstream_unavailable",
                f"{exc.message} (the LLM upstream was unavailable for {waited:.0f} s over {failures} attempts; "
                f"AGENT_LLM_OUTAGE_SECONDS is {settings.AGENT_LLM_OUTAGE_SECONDS:g})",
            ) from exc
        services.run_retry_later(run, retry_at=retry_at, since=since, failures=failures, error=exc.message)
        raise RunInterrupted(RunInterrupted.RETRYING) from exc


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


class RunContext:
    """What ``BaseAgent.run(ctx)`` gets. One per execution of a run on a worker.

    Attributes:
        run: the ``AgentRun`` (``run.instruction``, ``run.issue``).
        agent: the ``AgentInstance`` (``agent_type`` and ``project`` loaded).
        instruction: the run's instruction (text, may be empty).
        issue: the run's ``projects.Issue``, or ``None``.
        config: the agent's ``config``.
        template: the agent's effective template (``parameters.agent``), or the class's own, or ``{}``.
        llm: the metered LLM client (``MeteredLLM``).
        tool_call: the ``ToolCall`` platform tools run with (the agent's authority, this run).
    """

    def __init__(self, run: AgentRun, agent: AgentInstance, *, template: dict[str, Any] | None = None) -> None:
        self.run = run
        self.agent = agent
        self.instruction = run.instruction
        self.issue = run.issue
        self.config = agent.config if isinstance(agent.config, dict) else {}
        self.template = template or {}
        self.llm = MeteredLLM(self)
        self.tool_call = ToolCall(agent=agent, run=run)
        self._checkpoint = run.checkpoint
        self._last: StepRecorded | None = None  # the last step's read-back (the stop check rides on it)
        #: True once ``should_stop()`` has answered True (the class is expected to return promptly).
        self.stop_seen = False

    # --- Checkpoints ---

    @property
    def checkpoint(self) -> Any:
        """The state the run saved last (``save_checkpoint``), or ``None`` on its first start."""
        return self._checkpoint

    def save_checkpoint(self, state: Any) -> None:
        """Save ``state`` (JSON) as the point the run continues from after a pause, a wait or a lost worker
        (one ``UPDATE``).

        Nothing is written once the run was taken over by another worker (reaped: its task id changed).
        """
        AgentRun.objects.filter(pk=self.run.pk, task_id=self.run.task_id).update(
            checkpoint=state, updated_at=timezone.now()
        )
        self._checkpoint = state

    # --- Step boundaries ---

    def stop_reason(self) -> str | None:
        """Why the run must stop now (``RunInterrupted.PAUSED`` / ``CANCELLED``), or ``None``.

        The run is no longer ``running`` (cancelled, reaped) or no longer this task's (reaped while this worker was
        unresponsive, and taken over by another: its task id changed), or its agent is no longer ``working``
        (paused, over budget, terminated; or paused and resumed already: the run is parked and continues). Read
        from the last step's ``RETURNING`` when it is younger than ``STOP_CHECK_FRESH_SECONDS``, else with one
        ``SELECT``.
        """
        last = self._last
        if last is not None and last.agent_status is not None and (
                time.monotonic() - last.at < STOP_CHECK_FRESH_SECONDS):
            row = (last.run_status, last.agent_status, last.task_id)
        else:
            row = AgentRun.objects.filter(pk=self.run.pk).values_list("status", "agent__status", "task_id").first()
        if (row is None or row[0] != RunStatus.RUNNING or row[2] != self.run.task_id
                or row[1] == AgentStatus.TERMINATED):
            return RunInterrupted.CANCELLED
        if row[1] != AgentStatus.WORKING:
            return RunInterrupted.PAUSED
        return None

    def should_stop(self) -> bool:
        """True when the run must stop (long loops ask at each step): return promptly; the runtime parks or
        cancels the run and ignores what ``run`` returns."""
        stop = self.stop_reason() is not None
        self.stop_seen = self.stop_seen or stop
        return stop

    def stop_if_requested(self) -> None:
        """Raise ``RunInterrupted`` when the run must stop (``ctx.llm.chat`` calls this before every call)."""
        reason = self.stop_reason()
        if reason is not None:
            raise RunInterrupted(reason)

    # --- The trace ---

    def record_step(self, kind: str, *, name: str = "", input: Any = None, output: Any = None,
                    error: dict[str, Any] | None = None, duration_ms: int = 0, prompt_tokens: int = 0,
                    completion_tokens: int = 0, cost: Decimal = Decimal("0"), message: dict[str, Any] | None = None,
                    clear_retry: bool = False) -> StepRecorded:
        """Append a step to the run's trace (and its usage to the run and the agent); see ``trace.step_record``.

        ``kind`` is a ``StepKind`` (``message`` for a note of the agent's own); ``message`` is the conversation
        message the step added. Returns the ``trace.StepRecorded``.
        """
        recorded = step_record(
            self.run.pk, kind=kind, name=name, input=input, output=output, error=error, duration_ms=duration_ms,
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost=cost, agent_id=self.agent.pk,
            message=message, task_id=self.run.task_id, clear_retry=clear_retry,
        )
        self.run.steps_completed = recorded.index + 1
        self._last = recorded
        return recorded

    def enforce_budget(self) -> None:
        """Pause the agent (ledger reason ``budget: ...``) when its last step took it to or over its budget (read
        back by that step's statement); the run then stops at its next step boundary as ``paused`` with
        ``budget_exceeded``."""
        last = self._last
        if last is None or not last.budget_exceeded or last.agent_status != AgentStatus.WORKING:
            return
        agent = AgentInstance.objects.select_related("agent_type").get(pk=self.agent.pk)
        exceeded = agent.budget_exceeded()
        if exceeded and agent.status == AgentStatus.WORKING:
            agent_services.agent_transition(
                agent, AgentStatus.PAUSED, reason=f"run {self.run.pk}: budget: {exceeded}", run=self.run,
            )
        self._last = None  # the agent changed: the next stop check reads afresh

    # --- Shared contexts of the project, with the agent as the writer ---

    def read_context(self, name: str) -> dict[str, Any] | None:
        """The current data of the project's shared context ``name``, or ``None`` when there is none."""
        found = self.agent.project.contexts.filter(instance__isnull=True, name=name).first()
        return contexts.context_read(found).data if found is not None else None

    def write_context(self, name: str, data: dict[str, Any], *, mode: str = "replace",
                      change_description: str = "") -> int:
        """Write ``data`` to the project's shared context ``name`` (created when missing), as this agent.

        ``mode``: ``replace`` or ``merge`` (RFC 7396). Returns the new version number. Raises as
        ``agents.contexts.services.context_write``.
        """
        context, _ = contexts.context_get_or_create(project=self.agent.project, name=name, actor=self.agent)
        version = contexts.context_write(
            context, data, actor=self.agent, mode=mode, change_description=change_description or f"run {self.run.pk}"
        )
        return version.version

    def fail(self, code: str, message: str) -> None:
        """End the run as ``failed`` with ``code`` and ``message`` (raises ``RunFailure``)."""
        raise RunFailure(code, message)
