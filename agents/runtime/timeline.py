"""A run's timeline (the run page's waterfall): when each recorded step ran, and the waits for people between them.

A step is recorded when it ends (``AgentRunStep.created_at``) with its wall time (``duration_ms``), so it started
``duration_ms`` before that. A request to a person is a wait from ``requested_at`` to ``decided_at`` (or to now, or
to the run's end, while it is pending or was cancelled). Offsets count from the run's creation, so the time it
queued shows too. Built from the rows the run page has already read: no query of its own.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal

from django.utils import timezone

from ..choices import RunRequestKind, RunRequestStatus, StepKind
from ..models import AgentRun, AgentRunRequest, AgentRunStep

#: The narrowest bar drawn (percent of the run's span), so that a step of a few milliseconds stays visible.
MIN_BAR_PERCENT = 0.4


@dataclass
class TimelineRow:
    """One row of the waterfall: a step (``step`` set) or a wait for a person (``request`` set), or the queue.

    ``start``/``duration`` are seconds from the run's creation; ``left``/``width`` the bar's place in percent of the
    run's span. ``label`` names it; ``detail`` is its text (what the bar shows, for every reader).
    """

    kind: str
    label: str
    start: float
    duration: float
    left: float = 0.0
    width: float = 0.0
    detail: str = ""
    step: AgentRunStep | None = None
    request: AgentRunRequest | None = None

    @property
    def offset_display(self) -> str:
        return f"+{seconds_display(self.start)}"

    @property
    def duration_display(self) -> str:
        return seconds_display(self.duration)


def seconds_display(seconds: float) -> str:
    """``340 ms``, ``2.4 s``, ``3 min 5 s``, ``2 h 4 min``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    return f"{minutes // 60} h {minutes % 60} min"


def _seconds(moment: datetime.datetime, origin: datetime.datetime) -> float:
    return max(0.0, (moment - origin).total_seconds())


def _usage(step: AgentRunStep) -> str:
    parts = []
    if step.prompt_tokens or step.completion_tokens:
        parts.append(f"{step.prompt_tokens:,} in / {step.completion_tokens:,} out tokens")
    if step.cost:
        parts.append(f"{step.cost.normalize() if step.cost < 1 else step.cost:f} USD")
    elif isinstance(step.output, dict) and step.output.get("unpriced"):
        parts.append("unpriced (no price for the model: 0 USD)")
    return " · ".join(parts)


def _who(request: AgentRunRequest) -> str:
    if request.status == RunRequestStatus.PENDING:
        return "still waiting"
    if request.status == RunRequestStatus.CANCELLED:
        return f"cancelled {timezone.localtime(request.decided_at):%H:%M:%S}" if request.decided_at else "cancelled"
    who = request.decided_by.username if request.decided_by_id and request.decided_by else "someone since deleted"
    when = f" at {timezone.localtime(request.decided_at):%Y-%m-%d %H:%M:%S %Z}" if request.decided_at else ""
    return f"{request.get_status_display().lower()} by {who}{when}"


def run_timeline(run: AgentRun, steps: list[AgentRunStep], requests: list[AgentRunRequest], *, now=None) -> dict:
    """The waterfall of ``run`` from its ``steps`` and ``requests`` (already read, in any order).

    Returns ``{"rows": [TimelineRow, ...] (by start), "span": seconds from creation to the end (the run's end, else
    now), "span_display", "waiting": seconds spent waiting for people, "waiting_display", "queued_display"}``.
    Steps that are decisions (approval, input) are shown on their wait's row, not as bars of their own.
    """
    now = now or timezone.now()
    origin = run.created_at
    end = run.finished_at or now
    rows: list[TimelineRow] = []
    if run.started_at:
        queued = _seconds(run.started_at, origin)
        rows.append(TimelineRow("queue", "Queued", 0.0, queued, detail="until a worker took it"))
    for step in steps:
        if step.kind in (StepKind.APPROVAL, StepKind.INPUT):
            continue
        duration = step.duration_ms / 1000
        finished = _seconds(step.created_at, origin)
        detail = " · ".join(filter(None, [_usage(step), f"error {step.error.get('code')}" if step.error else ""]))
        rows.append(TimelineRow(step.kind, f"{step.get_kind_display()} {step.name}".strip(),
                                max(0.0, finished - duration), duration, detail=detail, step=step))
    waiting = 0.0
    for request in requests:
        asked = _seconds(request.requested_at, origin)
        answered = request.decided_at or (end if request.status != RunRequestStatus.PENDING else now)
        duration = max(0.0, _seconds(answered, origin) - asked)
        waiting += duration
        label = RunRequestKind(request.kind).label
        what = label[:1].lower() + label[1:]
        rows.append(TimelineRow("wait", f"Waiting for a person: {what}", asked, duration,
                                detail=f"{request.tool_name}: {_who(request)}", request=request))
    rows.sort(key=lambda row: (row.start, row.kind != "queue"))
    span = max([_seconds(end, origin), *(row.start + row.duration for row in rows), 0.001])
    for row in rows:
        row.left = min(100.0 - MIN_BAR_PERCENT, row.start / span * 100)
        row.width = max(MIN_BAR_PERCENT, min(100.0 - row.left, row.duration / span * 100))
    return {
        "rows": rows, "span": span, "span_display": seconds_display(span), "waiting": waiting,
        "waiting_display": seconds_display(waiting), "cost": sum((s.cost for s in steps), Decimal("0")),
    }
