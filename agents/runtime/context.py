"""What an agent class's ``run(ctx)`` works with: the ``RunContext`` and its metered LLM client.

Every LLM call a run makes goes through ``ctx.llm.chat`` (``MeteredLLM``): it stops the run when a
stop was requested (so no upstream call is made after a pause, a termination or a cancel commits),
gives its database connection back to the pool for the length of the call, calls the provider
(``aiservices.llm``) with the model ``call_model`` decides, and records an ``llm_call`` step with the upstream's
token usage and the cost from the price table (``aiservices.prices``, cached per process; a model without a price
is metered at 0 and the step is marked ``unpriced``, never priced as another model). The step's one statement
(``trace.step_record``) adds both to the run and the agent and reads back whether the run must stop and whether
the agent is now over budget, which pauses it (ledger reason ``budget``).

An upstream outage (``aiservices.llm.transient``: a failed connection, a timeout, 429 or a 5xx that is not a
validation error of the request, after the client's own quick retries) does not fail the run: the failed call is
recorded, the run waits for its next attempt without holding a worker (``services.run_retry_later``: exponential
backoff with jitter, or the upstream's ``Retry-After``), and only when the upstream has been unavailable to it for
``AGENT_LLM_OUTAGE_SECONDS`` does it fail with ``upstream_unavailable``. Any other refusal (a 4xx other than 429, or
a request the upstream called invalid whatever its status) or an answer that is not a chat completion fails it at
once (``upstream_error``), with the upstream's own text (``aiservices.llm.error_text``).

An answer that is empty or cannot be read (``aiservices.llm.BadAnswer``) is metered all the same (the usage the
upstream reported), recorded with the raw answer, and asked again once with a nudge; a second one fails the run
with ``empty_answer`` or ``unparsable_answer``.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from aiservices.exceptions import UpstreamError
from aiservices.llm import (
    RUN_HEADER,
    STEP_HEADER,
    BadAnswer,
    ChatCompletion,
    ChatRequest,
    error_text,
    get_chat_provider,
    transient,
)
from aiservices.models import ModelPrice
from aiservices.prices import price_for
from syndarix.exceptions import InvalidInput

from .. import services as agent_services
from ..choices import AgentStatus, RunStatus, StepKind
from ..contexts import services as contexts
from ..events.publish import publish_delta
from ..exceptions import UsageLimitExceeded
from ..models import AgentInstance, AgentRun
from . import services, telemetry
from .exceptions import RunFailure, RunInterrupted
from .slots import slots
from .tools.registry import ToolCall
from .trace import StepRecorded, cap, step_record

logger = logging.getLogger(__name__)

#: A stop check may ride on the answer of the run's last step when that answer is younger than this (seconds).
STOP_CHECK_FRESH_SECONDS = 1.0
#: Largest serialized raw answer kept on the step of an empty or unreadable answer (bytes).
RAW_ANSWER_MAX_BYTES = 8 * 1024


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


def call_model(*, override: str | None, config: Any, template: dict[str, Any] | None) -> str:
    """The model of one LLM call, the first named of (in this order):

    1. ``override``: the run's own choice (the ``model`` an agent class passes to ``ctx.llm.chat``);
    2. the agent's ``config["model"]``;
    3. the template's ``llm.model``;
    4. the setting ``AGENT_LLM_MODEL`` (what the built-in and demo agents follow: they name no model).

    Blank values count as not named. Returns the model name the request carries.
    """
    def named(value: Any) -> str | None:
        return value.strip() if isinstance(value, str) and value.strip() else None

    llm = (template or {}).get("llm")
    return (
        named(override)
        or named(config.get("model") if isinstance(config, dict) else None)
        or named(llm.get("model") if isinstance(llm, dict) else None)
        or settings.AGENT_LLM_MODEL
    )


def price(model: str, *, asked: str | None = None) -> ModelPrice | None:
    """The price table's row for the model that answered (``aiservices.prices.price_for``, cached per process), or
    ``None``: such a call is metered at 0 and marked unpriced (logged), never priced as another model.

    ``asked`` is the model the request named: its row applies only when the upstream answered with a dated or
    versioned name of it (``gpt-4o`` answered as ``gpt-4o-2024-08-06``)."""
    row = price_for(model)
    if row is None and asked and model != asked and model.startswith((f"{asked}-", f"{asked}@", f"{asked}:")):
        row = price_for(asked)
    if row is None:
        logger.warning("No price for model '%s' (aiservices.ModelPrice): its calls are metered at 0, unpriced.", model)
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

    def chat(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None,
             model: str | None = None, **params: Any) -> ChatCompletion:
        """Ask the model for the next message and meter the call.

        Args:
            messages: the conversation in the OpenAI Chat Completions format.
            tools: OpenAI ``tools`` entries (``Tool.openai_function()``), or ``None``.
            model: the run's override of the model (see ``call_model``).
            params: more request keys (``temperature``, ``max_tokens``, ``tool_choice``...).

        Returns the ``aiservices.llm.ChatCompletion``; its step's ``message`` is the assistant message (the agent
        loop's checkpoint). An empty or unreadable answer is recorded (with its usage and raw answer, and no
        ``message``) and asked once more with a nudge appended to ``messages`` for that one request.

        Raises:
            RunInterrupted: a stop was requested before the call (nothing is sent); or ``RETRYING``: the upstream
                is unavailable and the run now waits for its next attempt without a worker (the failed call is
                recorded as a step with its error, ``attempt`` and ``retry_at``).
            RunFailure: the upstream stayed unavailable for ``AGENT_LLM_OUTAGE_SECONDS`` (``upstream_unavailable``)
                or refused the call (``upstream_error``, with the upstream's own text); the failed call is recorded
                as a step with its error. Twice an unusable answer (``empty_answer``, ``unparsable_answer``). Or the
                usage it reported cannot be counted (``usage_limit_exceeded``: past the agent's counters' range).
        """
        request = ChatRequest(model=call_model(override=model, config=self._ctx.agent.config,
                                               template=self._ctx.template),
                              messages=messages, tools=tools or [], params=params)
        try:
            return self._call(request)
        except BadAnswer as bad:
            again = ChatRequest(model=request.model, messages=[*messages, bad.nudge], tools=request.tools,
                                params=params)
            try:
                return self._call(again)
            except BadAnswer as still:
                raise RunFailure(still.code, f"{still.message} (asked twice)") from still

    def _call(self, request: ChatRequest) -> ChatCompletion:
        """One metered call of ``request`` (see ``chat``); raises ``BadAnswer`` after recording an unusable answer."""
        self._ctx.stop_if_requested()
        messages, params = request.messages, request.params
        request.headers = {RUN_HEADER: str(self._ctx.run.pk), STEP_HEADER: str(self._ctx.run.steps_completed)}
        if settings.REDIS_URL:  # the call's text goes to the run's stream as llm.delta (events.publish_delta)
            request.on_delta = self._delta_publisher()
        shown = {
            "model": request.model, "messages": messages[self._recorded:], "message_count": len(messages),
            "tools": [t["function"]["name"] for t in request.tools if t.get("type") == "function"],
            **({"params": params} if params else {}),
        }
        started = time.monotonic()
        try:
            provider = get_chat_provider()
            shown["provider"] = provider.name
            with telemetry.llm_call(request, provider=provider.name) as call:
                with self._ctx.waiting():  # a run waiting on its LLM holds no database connection and no slot
                    completion = provider.complete(request, request_id=str(uuid.uuid4()))
                call.answered(completion)
        except BadAnswer as bad:
            self._record_bad_answer(request, shown, bad, started)
            raise
        except UpstreamError as exc:
            self._upstream_failed(exc, name=request.model, shown=shown, started=started)
        self._recorded = len(messages)
        cost, unpriced = self._cost(completion.model, request.model, completion.prompt_tokens,
                                    completion.completion_tokens)
        output = {"message": completion.message, "finish_reason": completion.finish_reason, "model": completion.model,
                  "attempts": completion.attempts, "usage_reported": completion.usage_reported,
                  **({"unpriced": True} if unpriced else {})}
        self._record_answer(
            name=completion.model, input=shown, output=output, duration_ms=_ms(started),
            prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens, cost=cost,
            unpriced=unpriced, message=completion.message,
        )
        return completion

    def _delta_publisher(self):
        """A callback publishing each piece of the call's text as an ``llm.delta`` of the run (never stored); its
        ``index`` is the index the call's step will have."""
        run, agent = self._ctx.run, self._ctx.agent
        base = {"run_id": str(run.pk), "agent_id": str(agent.pk), "index": run.steps_completed}

        def publish(text: str) -> None:
            publish_delta(run_id=run.pk, project_id=agent.project_id, data={**base, "text": text})

        return publish

    @staticmethod
    def _cost(model: str, asked: str, prompt_tokens: int, completion_tokens: int) -> tuple[Decimal, bool]:
        """``(cost in USD, unpriced)`` of a call's usage: 0 and ``True`` when the model has no price."""
        row = price(model, asked=asked)
        if row is None:
            return Decimal("0"), bool(prompt_tokens or completion_tokens)
        return row.cost(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens), False

    def _record_answer(self, **step: Any) -> None:
        """Record the ``llm_call`` step of an answer (``step``: ``RunContext.record_step``'s keywords): the upstream
        answered, so the run's outage, if any, ends in the same statement; then enforce the budget."""
        try:
            self._ctx.record_step(StepKind.LLM_CALL, clear_retry=bool(self._ctx.run.retry_count), **step)
        except (InvalidInput, UsageLimitExceeded) as exc:  # usage no counter can hold: nothing was recorded
            raise RunFailure("usage_limit_exceeded", exc.message) from exc
        self._ctx.run.retry_count, self._ctx.run.retry_since = 0, None
        self._ctx.enforce_budget()

    def _record_bad_answer(self, request: ChatRequest, shown: dict[str, Any], bad: BadAnswer, started: float) -> None:
        """Record an unusable answer as a failed step: metered with the usage the upstream reported, the raw answer
        kept (capped at ``RAW_ANSWER_MAX_BYTES``); it adds no message to the conversation."""
        cost, unpriced = self._cost(bad.model, request.model, bad.prompt_tokens, bad.completion_tokens)
        output = {"raw": cap(bad.raw, max_bytes=RAW_ANSWER_MAX_BYTES), "model": bad.model,
                  **({"unpriced": True} if unpriced else {})}
        self._record_answer(
            name=bad.model, input=shown, output=output, duration_ms=_ms(started),
            error={"code": bad.code, "message": bad.message}, prompt_tokens=bad.prompt_tokens,
            completion_tokens=bad.completion_tokens, cost=cost, unpriced=unpriced,
        )

    def _upstream_failed(self, exc: UpstreamError, *, name: str, shown: dict[str, Any], started: float) -> None:
        """Record the failed call and stop the run: it waits out an outage, or fails (see ``chat``)."""
        run = self._ctx.run
        if not transient(exc):
            failure = RunFailure("upstream_error", error_text(exc))
            self._ctx.record_step(StepKind.LLM_CALL, name=name, input=shown, duration_ms=_ms(started),
                                  error={"code": failure.code, "message": failure.message})
            raise failure from exc
        now = timezone.now()
        since, failures = run.retry_since or now, run.retry_count + 1
        retry_at = outage_retry_at(since=since, failures=failures, retry_after=getattr(exc, "retry_after", None),
                                   now=now)
        text = error_text(exc)
        error = {"code": "upstream_unavailable", "message": text, "attempt": failures,
                 "retry_at": retry_at.isoformat() if retry_at else None}
        self._ctx.record_step(StepKind.LLM_CALL, name=name, input=shown, duration_ms=_ms(started), error=error)
        if retry_at is None:
            waited = (now - since).total_seconds()
            raise RunFailure(
                "upstream_unavailable",
                f"{text} (the LLM upstream was unavailable for {waited:.0f} s over {failures} attempts; "
                f"AGENT_LLM_OUTAGE_SECONDS is {settings.AGENT_LLM_OUTAGE_SECONDS:g})",
            ) from exc
        services.run_retry_later(run, retry_at=retry_at, since=since, failures=failures, error=text)
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

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """For agent code that waits on something slow other than ``llm`` (an HTTP call of its own, a sleep): for
        the block, the run gives back its database connection (outside a transaction) and its worker slot
        (``slots``), so the process's other runs go on meanwhile. ``llm`` does this by itself."""
        release_connection()
        with slots.waiting():
            yield

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
                    clear_retry: bool = False, unpriced: bool = False) -> StepRecorded:
        """Append a step to the run's trace (and its usage to the run and the agent); see ``trace.step_record``.

        ``kind`` is a ``StepKind`` (``message`` for a note of the agent's own); ``message`` is the conversation
        message the step added. Returns the ``trace.StepRecorded``.
        """
        recorded = step_record(
            self.run.pk, kind=kind, name=name, input=input, output=output, error=error, duration_ms=duration_ms,
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost=cost, agent_id=self.agent.pk,
            message=message, task_id=self.run.task_id, clear_retry=clear_retry, unpriced=unpriced,
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
