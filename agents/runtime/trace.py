"""A run's trace: its steps, each recorded with its usage, and the size cap on what a step stores.

``step_record`` is the one place every step is written. On PostgreSQL it is one statement (``_RECORD_SQL``): the
agent's usage and activity, the run's counters and the step row, and the project's usage of the day (``UsageDay``,
the agent's shard; unpriced tokens included), with the agent's and the run's status, the run's task id and the
agent's budget read back from the same ``UPDATE … RETURNING``, so the worker learns at no extra cost whether it must
stop and whether the agent went over budget.
"""

from __future__ import annotations

import datetime
import json
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from projects.models import Project
from syndarix.exceptions import InvalidInput

from .. import counters, events
from ..events import Event, EventType
from ..events.outbox import XID_SQL
from ..models import AgentInstance, AgentRun, AgentRunStep, AgentType, UsageDay, budget_message
from ..services import USAGE_COUNTERS, usage_increment, usage_refused
from .telemetry import step_recorded

#: Largest serialized ``input`` / ``output`` a step stores (bytes); a larger value is stored as a preview.
STEP_VALUE_MAX_BYTES = 32 * 1024
#: Most tokens one step records per kind (its columns are 32-bit).
STEP_TOKENS_MAX = 2**31 - 1
#: Characters of a too-large value kept in its preview.
PREVIEW_CHARS = 4000
#: What stands for a NUL character in a stored step (PostgreSQL's ``jsonb`` cannot hold one).
NUL_REPLACEMENT = "\ufffd"


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", NUL_REPLACEMENT)
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


def storable(value: Any) -> Any:
    """``value`` as JSON the database stores: NUL characters (which ``jsonb`` refuses) replaced by U+FFFD."""
    if value is None:
        return None
    text = json.dumps(value, ensure_ascii=False, default=str)
    return _without_nul(json.loads(text)) if "\\u0000" in text else json.loads(text)


def cap(value: Any, *, max_bytes: int = STEP_VALUE_MAX_BYTES) -> Any:
    """``storable(value)`` when its JSON serialization fits ``max_bytes``, else ``{"truncated": true, "size_bytes",
    "preview"}`` with the first ``PREVIEW_CHARS`` characters of that serialization."""
    value = storable(value)
    if value is None:
        return None
    text = json.dumps(value, ensure_ascii=False)
    size = len(text.encode("utf-8"))
    if size <= max_bytes:
        return value
    return {"truncated": True, "size_bytes": size, "preview": text[:PREVIEW_CHARS]}


@dataclass(frozen=True)
class StepRecorded:
    """What ``step_record`` wrote and read back.

    Attributes:
        index: the step's index in its run (0, 1, ...).
        run_status: the run's status after the step (``running`` unless it was cancelled, parked or reaped).
        task_id: the run's current task id (another one than the worker's: the run was taken over).
        agent_status: the agent's status (``None`` when the step was recorded without an agent).
        budget_exceeded: why the agent is at or over its budget after this step's usage, or ``""``.
        at: ``time.monotonic()`` when the answer was read (how fresh a stop check riding on it is).
    """

    index: int
    run_status: str
    task_id: str
    agent_status: str | None = None
    budget_exceeded: str = ""
    at: float = 0.0


def step_record(
    run_id,
    *,
    kind: str,
    name: str = "",
    input: Any = None,
    output: Any = None,
    error: dict[str, Any] | None = None,
    message: dict[str, Any] | None = None,
    duration_ms: int = 0,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cost: Decimal = Decimal("0"),
    agent_id=None,
    task_id: str | None = None,
    clear_retry: bool = False,
    unpriced: bool = False,
) -> StepRecorded:
    """Append one step to run ``run_id`` and add its usage to the run and (with ``agent_id``) the agent.

    The step's ``index`` is the run's ``steps_completed`` before the run row's own increment, so steps are
    numbered 0, 1, ... without gaps whoever writes them (the worker, or a person's decision). Usage goes to
    ``AgentRun.tokens_used``/``cost`` and ``AgentInstance.tokens_used``/``cost_incurred`` with atomic increments
    (the agent's bounded by its columns' range, as ``agents.services.usage_increment``), and to the project's
    usage of the day (``agents.counters.usage_added``); ``input`` and ``output`` are ``cap``-ped. With ``agent_id``
    the agent's ``last_activity_at`` and ``last_heartbeat_at`` are stamped too. The agent row is locked before the
    run row, the order every runtime service locks them in (a claim, a cancel, the reaper), so recording a step
    never deadlocks with one of them.

    On PostgreSQL this is one statement (``_RECORD_SQL``); elsewhere (SQLite, ``make run``) one transaction of a
    few. A transactional outbox's event row joins ``_RECORD_SQL`` as one more data-modifying CTE reading the
    ``step`` CTE's ``RETURNING``, so a step and its event still cost one statement.

    Args:
        kind: a ``StepKind`` value.
        message: the conversation message the step added (the agent loop's checkpoint is derived from these).
        prompt_tokens, completion_tokens: tokens of an LLM call; ``cost``: USD.
        agent_id: the agent whose counters the usage adds to (``None``: the run only, no usage).
        task_id: the recording worker's task id: when the run has another one (it was taken over), the step is
            recorded (its usage happened) but its ``message`` is not, so the run's conversation stays the new
            worker's.
        clear_retry: the upstream answered: end the run's outage (``retry_since``, ``retry_count``,
            ``retry_error``).
        unpriced: the call's model has no price (``cost`` is 0): its tokens also count as ``unpriced_tokens`` of
            the run and the project's day, in the same statement.

    Returns a ``StepRecorded``.

    Raises:
        InvalidInput: more than ``STEP_TOKENS_MAX`` prompt or completion tokens (nothing is recorded).
        UsageLimitExceeded: the agent's ``tokens_used`` or ``cost_incurred`` would pass its range (nothing is
            recorded).
        AgentRun.DoesNotExist: no such run (nothing is recorded).
    """
    for field, value in (("prompt_tokens", prompt_tokens), ("completion_tokens", completion_tokens)):
        if value > STEP_TOKENS_MAX:
            raise InvalidInput(f"{field} must be at most {STEP_TOKENS_MAX}.", code="max_value", field=field)
    step = {
        "kind": kind, "name": name[:200], "input": cap(input), "output": cap(output), "error": storable(error),
        "message": storable(message), "duration_ms": max(0, int(duration_ms)), "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens, "cost": cost,
    }
    tokens = prompt_tokens + completion_tokens
    usage = {"tokens": tokens, "cost": cost, "unpriced_tokens": tokens if unpriced else 0}
    if connection.vendor == "postgresql" and agent_id is not None:
        recorded = _record_postgresql(run_id, agent_id, step, **usage, task_id=task_id, clear_retry=clear_retry)
    else:
        recorded = _record_orm(run_id, agent_id, step, **usage, task_id=task_id, clear_retry=clear_retry)
    step_recorded(kind)
    return recorded


def step_event_data(run_id, agent_id, step_id, index: int, step: dict[str, Any]) -> dict[str, Any]:
    """A ``run.step`` event's ``data``: the step's ids, index, kind, name, tokens, cost (USD, a string) and duration
    (ms), not its input or output (the same keys as the statement of ``_record_sql`` builds)."""
    return {
        "run_id": str(run_id), "agent_id": str(agent_id), "step_id": str(step_id), "index": index,
        "kind": step["kind"], "name": step["name"], "prompt_tokens": step["prompt_tokens"],
        "completion_tokens": step["completion_tokens"], "cost": str(step["cost"]), "duration_ms": step["duration_ms"],
    }


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _record_sql() -> str:
    """The one statement of a step with an agent (see ``step_record``); named parameters."""
    agent, run, step, agent_type = (_q(m._meta.db_table) for m in (AgentInstance, AgentRun, AgentRunStep, AgentType))
    day = _q(UsageDay._meta.db_table)
    event, project = _q(Event._meta.db_table), _q(Project._meta.db_table)
    step_columns = ["id", "run_id", "index", "kind", "name", "input", "output", "error", "message", "duration_ms",
                    "prompt_tokens", "completion_tokens", "cost", "created_at"]
    usage = ["tokens_used", "cost_incurred", "unpriced_tokens", "prompt_tokens", "completion_tokens"]
    zeros = [column for column in counters._DAY_COLUMNS if column not in usage]
    return f"""
WITH agent AS (
    UPDATE {agent} SET tokens_used = tokens_used + %(tokens)s, cost_incurred = cost_incurred + %(cost)s,
        last_activity_at = %(now)s, last_heartbeat_at = %(now)s
    WHERE id = %(agent_id)s AND tokens_used <= %(tokens_room)s AND cost_incurred <= %(cost_room)s
    RETURNING id, status, project_id, is_playground, agent_type_id, tokens_used, cost_incurred, max_tokens,
        max_cost_usd
), run AS (
    UPDATE {run} AS r SET steps_completed = r.steps_completed + 1, tokens_used = r.tokens_used + %(tokens)s,
        cost = r.cost + %(cost)s, unpriced_tokens = r.unpriced_tokens + %(unpriced_tokens)s, updated_at = %(now)s,
        retry_since = CASE WHEN %(clear_retry)s THEN NULL ELSE r.retry_since END,
        retry_count = CASE WHEN %(clear_retry)s THEN 0 ELSE r.retry_count END,
        retry_error = CASE WHEN %(clear_retry)s THEN '' ELSE r.retry_error END
    FROM agent WHERE r.id = %(run_id)s
    RETURNING r.steps_completed - 1 AS idx, r.status, r.task_id
), step AS (
    INSERT INTO {step} ({", ".join(_q(c) for c in step_columns)})
    SELECT %(step_id)s, %(run_id)s, run.idx, %(kind)s, %(name)s, %(input)s::jsonb, %(output)s::jsonb, %(error)s::jsonb,
        CASE WHEN %(task_id)s::varchar IS NULL OR run.task_id = %(task_id)s::varchar THEN %(message)s::jsonb END,
        %(duration_ms)s, %(prompt_tokens)s, %(completion_tokens)s, %(cost)s, %(now)s
    FROM run
    RETURNING id
), event AS (
    INSERT INTO {event} (type, created_at, workspace_id, project_id, run_id, agent_id, xid, data)
    SELECT %(event_type)s, %(now)s, project.workspace_id, agent.project_id, %(run_id)s, agent.id, {XID_SQL},
        jsonb_build_object('run_id', %(run_id)s::text, 'agent_id', agent.id::text, 'step_id', step.id::text,
            'index', run.idx, 'kind', %(kind)s::text, 'name', %(name)s::text,
            'prompt_tokens', %(prompt_tokens)s::integer, 'completion_tokens', %(completion_tokens)s::integer,
            'cost', %(cost_text)s::text, 'duration_ms', %(duration_ms)s::integer)
    FROM step CROSS JOIN run CROSS JOIN agent JOIN {project} AS project ON project.id = agent.project_id
    RETURNING id, workspace_id, project_id, xid, data
), usage AS (
    INSERT INTO {day} (id, project_id, is_playground, day, shard, {", ".join(_q(c) for c in usage + zeros)})
    SELECT %(day_id)s, agent.project_id, agent.is_playground, %(day)s, %(shard)s, %(tokens)s, %(cost)s,
        %(unpriced_tokens)s, %(prompt_tokens)s, %(completion_tokens)s{", 0" * len(zeros)}
    FROM agent WHERE %(tokens)s > 0 OR %(cost)s > 0
    ON CONFLICT (project_id, is_playground, day, shard) DO UPDATE SET
        {", ".join(f"{_q(c)} = {day}.{_q(c)} + excluded.{_q(c)}" for c in usage)}
)
SELECT run.idx, run.status, run.task_id, agent.status, agent.tokens_used, agent.cost_incurred,
    COALESCE(agent.max_tokens, agent_type.max_tokens), COALESCE(agent.max_cost_usd, agent_type.max_cost_usd),
    event.id, event.workspace_id, event.project_id, event.xid, event.data
FROM agent CROSS JOIN run JOIN {agent_type} AS agent_type ON agent_type.id = agent.agent_type_id
    LEFT JOIN event ON true
"""


_RECORD_SQL: list[str] = []


def _record_postgresql(run_id, agent_id, step: dict[str, Any], *, tokens: int, cost: Decimal, unpriced_tokens: int,
                       task_id: str | None, clear_retry: bool) -> StepRecorded:
    if not _RECORD_SQL:
        _RECORD_SQL.append(_record_sql())
    fields = {name: AgentRunStep._meta.get_field(name) for name in ("input", "output", "error", "message")}
    tokens_limit, cost_limit = USAGE_COUNTERS["tokens"][1], USAGE_COUNTERS["cost"][1]
    if tokens > tokens_limit or cost > cost_limit:
        usage_increment(agent_id, tokens=tokens, cost=cost)  # raises InvalidInput naming the field
    now = timezone.now()
    params = {
        **step, **{name: field.get_db_prep_save(step[name], connection) for name, field in fields.items()},
        "run_id": run_id, "agent_id": agent_id, "step_id": uuid.uuid4(), "day_id": uuid.uuid4(),
        "tokens": tokens, "cost": cost, "unpriced_tokens": unpriced_tokens, "tokens_room": tokens_limit - tokens,
        "cost_room": cost_limit - cost,
        "now": now, "day": now.astimezone(datetime.UTC).date(), "task_id": task_id, "clear_retry": clear_retry,
        "shard": counters.shard_of(agent_id), "event_type": EventType.RUN_STEP, "cost_text": str(cost),
    }
    with connection.cursor() as cursor:
        cursor.execute(_RECORD_SQL[0], params)
        row = cursor.fetchone()
    if row is None:
        if not AgentRun.objects.filter(pk=run_id).exists():
            raise AgentRun.DoesNotExist(f"No run {run_id}.")
        usage_refused(agent_id, {"tokens": tokens, "cost": cost})
    index, run_status, current_task, agent_status, used_tokens, used_cost, max_tokens, max_cost = row[:8]
    event_id, workspace_id, project_id, xid, data = row[8:]
    if event_id is not None:
        events.published(Event(id=event_id, type=EventType.RUN_STEP, created_at=now, workspace_id=workspace_id,
                                project_id=project_id, run_id=run_id, agent_id=agent_id, xid=xid,
                                data=data if isinstance(data, dict) else json.loads(data)))
    return StepRecorded(
        index=index, run_status=run_status, task_id=current_task, agent_status=agent_status,
        budget_exceeded=budget_message(used_tokens, used_cost, max_tokens, max_cost), at=time.monotonic(),
    )


def _record_orm(run_id, agent_id, step: dict[str, Any], *, tokens: int, cost: Decimal, unpriced_tokens: int,
                task_id: str | None, clear_retry: bool) -> StepRecorded:
    """``step_record`` in a transaction of a few statements (SQLite, and steps recorded without an agent)."""
    with transaction.atomic():
        agent = None
        if agent_id is not None:
            now = timezone.now()
            usage_increment(agent_id, tokens=tokens, cost=cost, last_heartbeat_at=now, last_activity_at=now)
            agent = AgentInstance.objects.select_related("agent_type").get(pk=agent_id)
            counters.usage_added(agent, cost=cost, prompt_tokens=step["prompt_tokens"],
                                 completion_tokens=step["completion_tokens"], unpriced_tokens=unpriced_tokens)
        index, run_status, current_task, run_agent = AgentRun.objects.select_for_update().values_list(
            "steps_completed", "status", "task_id", "agent_id").get(pk=run_id)
        if task_id is not None and current_task != task_id:
            step["message"] = None
        created = AgentRunStep.objects.create(run_id=run_id, index=index, **step)
        events.emit(EventType.RUN_STEP, agent_id=run_agent, run_id=run_id,
                    data=step_event_data(run_id, run_agent, created.pk, index, step))
        retry = {"retry_since": None, "retry_count": 0, "retry_error": ""} if clear_retry else {}
        AgentRun.objects.filter(pk=run_id).update(
            steps_completed=F("steps_completed") + 1, tokens_used=F("tokens_used") + tokens, cost=F("cost") + cost,
            unpriced_tokens=F("unpriced_tokens") + unpriced_tokens, updated_at=timezone.now(), **retry,
        )
    return StepRecorded(
        index=index, run_status=run_status, task_id=current_task,
        agent_status=agent.status if agent is not None else None,
        budget_exceeded=agent.budget_exceeded() if agent is not None else "", at=time.monotonic(),
    )
