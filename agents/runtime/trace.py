"""A run's trace: its steps, each recorded with its usage, and the size cap on what a step stores."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from syndarix.exceptions import InvalidInput

from .. import counters
from ..models import AgentInstance, AgentRun, AgentRunStep
from ..services import usage_increment

#: Largest serialized ``input`` / ``output`` a step stores (bytes); a larger value is stored as a preview.
STEP_VALUE_MAX_BYTES = 32 * 1024
#: Most tokens one step records per kind (its columns are 32-bit).
STEP_TOKENS_MAX = 2**31 - 1
#: Characters of a too-large value kept in its preview.
PREVIEW_CHARS = 4000


def cap(value: Any, *, max_bytes: int = STEP_VALUE_MAX_BYTES) -> Any:
    """``value`` when its JSON serialization fits ``max_bytes``, else ``{"truncated": true, "size_bytes",
    "preview"}`` with the first ``PREVIEW_CHARS`` characters of that serialization."""
    if value is None:
        return None
    text = json.dumps(value, ensure_ascii=False, default=str)
    size = len(text.encode("utf-8"))
    if size <= max_bytes:
        return json.loads(text)
    return {"truncated": True, "size_bytes": size, "preview": text[:PREVIEW_CHARS]}


def step_record(
    run_id,
    *,
    kind: str,
    name: str = "",
    input: Any = None,
    output: Any = None,
    error: dict[str, Any] | None = None,
    duration_ms: int = 0,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cost: Decimal = Decimal("0"),
    agent_id=None,
    unpriced: bool = False,
) -> AgentRunStep:
    """Append one step to run ``run_id`` and add its usage to the run and (with ``agent_id``) the agent.

    The step's ``index`` is the run's ``steps_completed``, read with the run row locked, so steps are
    numbered 0, 1, ... without gaps whoever writes them (the worker, or a person's decision). Usage
    goes to ``AgentRun.tokens_used``/``cost`` and ``AgentInstance.tokens_used``/``cost_incurred`` with
    atomic ``F()`` increments in the same transaction (the agent's through ``usage_increment``, bounded by
    its columns' range), and to the project's totals (``agents.counters``); ``input`` and ``output`` are
    ``cap``-ped.

    Args:
        kind: a ``StepKind`` value.
        prompt_tokens, completion_tokens: tokens of an LLM call; ``cost``: USD.
        agent_id: the agent whose counters the usage adds to (``None``: the run only, no usage).
        unpriced: the call's model has no price (``cost`` is 0): its tokens also count as ``unpriced_tokens`` of
            the run and the project.

    Returns the new ``AgentRunStep``.

    Raises:
        InvalidInput: more than ``STEP_TOKENS_MAX`` prompt or completion tokens (nothing is recorded).
        UsageLimitExceeded: the agent's ``tokens_used`` or ``cost_incurred`` would pass its range (nothing is
            recorded).
    """
    for field, value in (("prompt_tokens", prompt_tokens), ("completion_tokens", completion_tokens)):
        if value > STEP_TOKENS_MAX:
            raise InvalidInput(f"{field} must be at most {STEP_TOKENS_MAX}.", code="max_value", field=field)
    tokens = prompt_tokens + completion_tokens
    unpriced_tokens = tokens if unpriced else 0
    with transaction.atomic():
        if agent_id is not None:
            # The agent row first, then the run: the order every runtime service locks them in (a claim, a cancel,
            # the reaper), so recording a step never deadlocks with one of them.
            now = timezone.now()
            usage_increment(agent_id, tokens=tokens, cost=cost, last_heartbeat_at=now, last_activity_at=now)
            if tokens or cost:
                agent = AgentInstance.objects.only("project_id", "is_playground").get(pk=agent_id)
                counters.usage_added(agent, tokens=tokens, cost=cost, unpriced_tokens=unpriced_tokens)
        index = AgentRun.objects.select_for_update().values_list("steps_completed", flat=True).get(pk=run_id)
        step = AgentRunStep.objects.create(
            run_id=run_id, index=index, kind=kind, name=name[:200], input=cap(input), output=cap(output),
            error=error, duration_ms=max(0, int(duration_ms)), prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens, cost=cost,
        )
        AgentRun.objects.filter(pk=run_id).update(
            steps_completed=F("steps_completed") + 1, tokens_used=F("tokens_used") + tokens, cost=F("cost") + cost,
            unpriced_tokens=F("unpriced_tokens") + unpriced_tokens, updated_at=timezone.now(),
        )
    return step
