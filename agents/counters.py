"""The agent counters: per project, agents by status and usage per day; per workspace, live agents.

The project metrics, the list totals, the admin's charts, ``/metrics`` and the spawn's concurrency check read these
rows instead of aggregating the agents, runs and steps (O(fleet)). Every change that moves a counter moves it in its
own transaction, with one upsert (``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n``, PostgreSQL and SQLite
alike):

- ``agent_spawned``: ``agents.services.agent_spawn`` (under the workspace lock);
- ``agent_moved``: ``agents.services.agent_transition``, the one path of every status change;
- ``usage_added``: ``agents.services.agent_record_usage`` and the runtime's LLM steps (today's ``UsageDay``);
- ``run_finished``: the runtime's services, when a run succeeds, fails or is cancelled (today's ``UsageDay``).

Agents are never deleted one by one (they are terminated); they go with their project, and the project's counter
rows with them. ``counters_recompute`` (the ``recompute_agent_counters`` command) rebuilds the rows from the agents,
runs and steps, for data written around the services (a restore, bulk SQL).
"""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, DecimalField, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from projects.models import Project, Workspace

from .choices import AgentStatus, RunStatus
from .models import AgentCounter, AgentInstance, AgentRun, AgentRunStep, UsageDay, WorkspaceAgentCounter

#: The ``AgentCounter`` column of each status (the wire value).
STATUS_COLUMNS = {status: status.value for status in AgentStatus}
#: The ``UsageDay`` totals, kept equal to the sums over the agents.
USAGE_COLUMNS = ("tasks_completed", "tokens_used", "cost_incurred")
#: The ``UsageDay`` column counting the runs that ended in each status.
RUN_COLUMNS = {RunStatus.SUCCEEDED: "runs_succeeded", RunStatus.FAILED: "runs_failed",
               RunStatus.CANCELLED: "runs_cancelled"}
_DAY_COLUMNS = (*USAGE_COLUMNS, "prompt_tokens", "completion_tokens", *RUN_COLUMNS.values())
_STATUS = tuple(STATUS_COLUMNS.values())


def today() -> datetime.date:
    """The UTC date a usage counts on now (``UsageDay.day``)."""
    return timezone.now().astimezone(datetime.UTC).date()


def _upsert(model, key: dict[str, Any], columns: tuple[str, ...], deltas: dict[str, Any]) -> None:
    """Add ``deltas`` (column → amount) to ``model``'s row of ``key`` (its unique fields → values), creating it."""
    table, quote = model._meta.db_table, connection.ops.quote_name
    names = [*key, *columns]
    values = [model._meta.get_field(name).get_db_prep_value(value, connection) for name, value in key.items()]
    values += [deltas.get(column, 0) for column in columns]
    updates = ", ".join(
        f"{quote(column)} = {quote(table)}.{quote(column)} + excluded.{quote(column)}"
        for column in columns if column in deltas
    )
    conflict = ", ".join(quote(model._meta.get_field(name).column) for name in key)
    pk = model._meta.pk.get_db_prep_value(uuid.uuid4(), connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(table)} (id, {', '.join(quote(model._meta.get_field(n).column) for n in names)}) "
            f"VALUES (%s, {', '.join(['%s'] * len(names))}) ON CONFLICT ({conflict}) DO UPDATE SET {updates}",
            [pk, *values],
        )


def _add_to_project(project_id, is_playground: bool, deltas: dict[str, Any]) -> None:
    """Add ``deltas`` (status column → amount) to the project's counter row, creating the row when missing."""
    _upsert(AgentCounter, {"project": project_id, "is_playground": is_playground}, _STATUS, deltas)


def _add_to_day(project_id, is_playground: bool, deltas: dict[str, Any], *, day=None) -> None:
    """Add ``deltas`` (``UsageDay`` column → amount) to the project's row of ``day`` (default: today)."""
    key = {"project": project_id, "is_playground": is_playground, "day": day or today()}
    _upsert(UsageDay, key, _DAY_COLUMNS, deltas)


def _add_to_workspace(workspace_id, live: int) -> None:
    """Add ``live`` to the workspace's live-agent counter, creating the row when missing."""
    table, quote = WorkspaceAgentCounter._meta.db_table, connection.ops.quote_name
    workspace = WorkspaceAgentCounter._meta.pk.target_field.get_db_prep_value(workspace_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(table)} (workspace_id, live) VALUES (%s, %s) "
            f"ON CONFLICT (workspace_id) DO UPDATE SET live = {quote(table)}.live + excluded.live",
            [workspace, live],
        )


def agent_spawned(agent: AgentInstance, *, workspace_id) -> None:
    """Count a new (IDLE) ``agent`` in its project and as live in ``workspace_id``. Call it in the spawn's
    transaction, with the workspace locked."""
    _add_to_project(agent.project_id, agent.is_playground, {STATUS_COLUMNS[AgentStatus.IDLE]: 1})
    _add_to_workspace(workspace_id, 1)


def agent_moved(agent: AgentInstance, *, source: str, target: str) -> None:
    """Move ``agent`` from the ``source`` status column to ``target`` (and out of its workspace's live count when
    ``target`` is terminated). Call it in the transition's transaction, with the agent locked."""
    _add_to_project(agent.project_id, agent.is_playground, {STATUS_COLUMNS[source]: -1, STATUS_COLUMNS[target]: 1})
    if target == AgentStatus.TERMINATED:
        if AgentInstance.project.is_cached(agent):
            workspace_id = agent.project.workspace_id
        else:
            workspace_id = Project.objects.filter(pk=agent.project_id).values_list("workspace_id", flat=True).get()
        _add_to_workspace(workspace_id, -1)


def usage_added(
    agent: AgentInstance,
    *,
    tokens: int | None = None,
    cost: Decimal = Decimal("0"),
    tasks_completed: int = 0,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
) -> None:
    """Add usage to today's ``UsageDay`` of ``agent``'s project (``agent`` needs ``project_id`` and
    ``is_playground``), with one statement. Call it in the transaction that adds the usage to the agent.

    Args:
        tokens: all tokens (default: ``prompt_tokens + completion_tokens``); usage posted without a split passes
            only this.
        prompt_tokens, completion_tokens: the input and output tokens of an LLM call.
        cost: USD. tasks_completed: tasks finished.
    """
    tokens = prompt_tokens + completion_tokens if tokens is None else tokens
    deltas = {"tokens_used": tokens, "cost_incurred": cost, "tasks_completed": tasks_completed,
              "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    if any(deltas.values()):
        _add_to_day(agent.project_id, agent.is_playground, deltas)


def run_finished(agent: AgentInstance, *, status: str, tasks_completed: int = 0) -> None:
    """Count a run of ``agent`` that ended today in ``status`` (succeeded, failed or cancelled), with the
    ``tasks_completed`` it adds to the agent, in one statement. Call it in the transaction that ends the run."""
    _add_to_day(agent.project_id, agent.is_playground, {RUN_COLUMNS[status]: 1, "tasks_completed": tasks_completed})


def usage_totals(days, *, group_by: tuple[str, ...] = ()) -> Any:
    """Sum ``days`` (a ``UsageDay`` queryset): one dict of every ``UsageDay`` column, zeros when there is no row,
    or with ``group_by`` a ``values()`` queryset of those sums per group."""
    sums = {column: Sum(column) for column in _DAY_COLUMNS}
    if group_by:
        return days.order_by().values(*group_by).annotate(**sums)
    row = days.order_by().aggregate(**sums)
    return {column: row[column] or (Decimal("0") if column == "cost_incurred" else 0) for column in _DAY_COLUMNS}


def counter_subquery(expression, *, project_ref: str = "pk", include_playground: bool = False) -> Coalesce:
    """The sum of ``expression`` (over ``AgentCounter`` columns, e.g. ``F("idle")``) across the outer project's counter
    rows (one, or two with the playground's): a correlated subquery on the ``(project, is_playground)`` index."""
    rows = AgentCounter.objects.filter(project=OuterRef(project_ref))
    if not include_playground:
        rows = rows.filter(is_playground=False)
    summed = rows.order_by().values("project").annotate(n=Sum(expression)).values("n")
    return Coalesce(Subquery(summed), 0)


def usage_subquery(column: str, *, project_ref: str = "pk", include_playground: bool = False) -> Coalesce:
    """The sum of one ``UsageDay`` column over the outer project's rows (``project_ref`` names its id): a
    correlated subquery on the ``(project, is_playground, day)`` index, zero without rows."""
    rows = UsageDay.objects.filter(project=OuterRef(project_ref))
    if not include_playground:
        rows = rows.filter(is_playground=False)
    summed = rows.order_by().values("project").annotate(n=Sum(column)).values("n")
    if column == "cost_incurred":
        field = DecimalField(max_digits=24, decimal_places=6)
        return Coalesce(Subquery(summed, output_field=field), Value(Decimal("0")), output_field=field)
    return Coalesce(Subquery(summed), 0)


def project_metrics(project: Project, *, include_playground: bool = False) -> dict[str, Any]:
    """The project's agent metrics from its counter and usage rows, in one query.

    Returns the shape of ``agents.selectors.agent_metrics``: ``total_instances``, ``active_instances``
    (WORKING), ``idle_instances``, ``waiting_instances``, ``paused_instances``, ``terminated_instances``,
    ``total_tasks_completed``, ``total_tokens_used`` (tokens), ``total_cost_incurred`` (USD, Decimal).
    """
    playground = Q() if include_playground else Q(agent_counters__is_playground=False)
    row = Project.objects.filter(pk=project.pk).annotate(
        **{column: Coalesce(Sum(f"agent_counters__{column}", filter=playground), 0) for column in _STATUS},
        **{column: usage_subquery(column, include_playground=include_playground) for column in USAGE_COLUMNS},
    ).values(*_STATUS, *USAGE_COLUMNS).first() or {}
    totals = {column: row.get(column) or 0 for column in (*_STATUS, *USAGE_COLUMNS)}
    return {
        "total_instances": sum(totals[column] for column in _STATUS),
        "active_instances": totals["working"],
        "idle_instances": totals["idle"],
        "waiting_instances": totals["waiting"],
        "paused_instances": totals["paused"],
        "terminated_instances": totals["terminated"],
        "total_tasks_completed": totals["tasks_completed"],
        "total_tokens_used": totals["tokens_used"],
        "total_cost_incurred": Decimal(totals["cost_incurred"]),
    }


def agent_count(project: Project, *, statuses=None, include_playground: bool = False) -> int:
    """How many agents ``project`` has (of ``statuses``, a collection of status values; default all), from its
    counter rows: the total of the agent list when it is filtered by nothing else."""
    columns = [STATUS_COLUMNS[AgentStatus(s)] for s in statuses] if statuses else list(STATUS_COLUMNS.values())
    rows = AgentCounter.objects.filter(project=project)
    if not include_playground:
        rows = rows.filter(is_playground=False)
    return sum(row[column] for row in rows.values(*columns) for column in columns)


def workspace_live(workspace: Workspace) -> int:
    """The workspace's live (not terminated) agents, playground included, from its counter."""
    return WorkspaceAgentCounter.objects.filter(workspace=workspace).values_list("live", flat=True).first() or 0


def counters_recompute(*, workspaces=None, dry_run: bool = False) -> list[dict[str, Any]]:
    """Rebuild the counters of ``workspaces`` (default: every workspace) from the agents, runs and steps, and
    report the values that were wrong.

    What is rebuilt: the agents by status (``AgentCounter``) and the live agents (``WorkspaceAgentCounter``) from the
    agents; per day, the LLM steps' ``prompt_tokens`` / ``completion_tokens`` (by the step's time) and the runs
    ended per outcome (by ``finished_at``); per project, the totals ``tokens_used``, ``cost_incurred`` and
    ``tasks_completed`` against the sums over its agents (usage posted through the API has no date of its own, so a
    difference is added to today's row).

    One transaction per workspace: the workspace is locked (no spawn meanwhile) and its counter rows are locked
    before the agents are aggregated, so a concurrent transition or usage either committed before the aggregate
    (and is in it) or adds its change after the rebuilt value is saved. Rows that count nothing are kept.

    Returns one ``{"workspace", "project", "is_playground", "day", "column", "stored", "actual"}`` per value that
    differed (``day`` ``None`` for agent counts and usage totals; ``project``/``is_playground`` ``None`` for the
    workspace's ``live``). With ``dry_run`` nothing is written.
    """
    workspaces = Workspace.objects.all() if workspaces is None else workspaces
    report: list[dict[str, Any]] = []
    for workspace_id in workspaces.order_by("pk").values_list("pk", flat=True):
        with transaction.atomic():
            report += _recompute_workspace(workspace_id, dry_run=dry_run)
    return report


def _difference(report: list, workspace_id, key: tuple, column: str, stored, actual, day=None) -> None:
    report.append({"workspace": workspace_id, "project": key[0], "is_playground": key[1], "day": day,
                   "column": column, "stored": stored, "actual": actual})


def _recompute_workspace(workspace_id, *, dry_run: bool) -> list[dict[str, Any]]:
    Workspace.objects.select_for_update().filter(pk=workspace_id).first()
    stored = {
        (row.project_id, row.is_playground): row
        for row in AgentCounter.objects.select_for_update().filter(project__workspace_id=workspace_id).order_by("pk")
    }
    days = {
        (row.project_id, row.is_playground, row.day): row
        for row in UsageDay.objects.select_for_update().filter(project__workspace_id=workspace_id).order_by("pk")
    }
    stored_live = WorkspaceAgentCounter.objects.select_for_update().filter(workspace_id=workspace_id).first()
    agents = AgentInstance.objects.filter(project__workspace_id=workspace_id).order_by()
    aggregates = {column: Count("pk", filter=Q(status=status)) for status, column in STATUS_COLUMNS.items()}
    actual = {
        (row["project_id"], row["is_playground"]): row
        for row in agents.values("project_id", "is_playground").annotate(
            **aggregates, **{column: Sum(column) for column in USAGE_COLUMNS})
    }
    report: list[dict[str, Any]] = []
    for key in sorted(set(stored) | set(actual), key=str):
        row = stored.get(key) or AgentCounter(project_id=key[0], is_playground=key[1])
        values = actual.get(key, {})
        changed = []
        for column in _STATUS:
            want, have = values.get(column) or 0, getattr(row, column)
            if have != want:
                changed.append(column)
                _difference(report, workspace_id, key, column, have, want)
                setattr(row, column, want)
        if changed and not dry_run:
            row.save(update_fields=changed) if key in stored else row.save(force_insert=True)

    changed_days: dict[tuple, set[str]] = {}

    def day_row(key: tuple) -> UsageDay:
        if key not in days:
            days[key] = UsageDay(project_id=key[0], is_playground=key[1], day=key[2])
        return days[key]

    exact = _dated_usage(workspace_id)
    for key in sorted(set(days) | set(exact), key=str):
        row = day_row(key)
        for column in ("prompt_tokens", "completion_tokens", *RUN_COLUMNS.values()):
            want, have = exact.get(key, {}).get(column, 0), getattr(row, column)
            if have != want:
                _difference(report, workspace_id, key[:2], column, have, want, day=key[2])
                setattr(row, column, want)
                changed_days.setdefault(key, set()).add(column)
    zero = {"cost_incurred": Decimal("0")}
    sums: dict[tuple, dict[str, Any]] = {}
    for key, row in days.items():
        total = sums.setdefault(key[:2], {column: zero.get(column, 0) for column in USAGE_COLUMNS})
        for column in USAGE_COLUMNS:
            total[column] += getattr(row, column)
    for key in sorted(set(actual) | set(sums), key=str):
        for column in USAGE_COLUMNS:
            have = sums.get(key, {}).get(column, zero.get(column, 0))
            want = actual.get(key, {}).get(column) or zero.get(column, 0)
            if have != want:
                _difference(report, workspace_id, key, column, have, want)
                row = day_row((*key, today()))
                setattr(row, column, getattr(row, column) + want - have)
                changed_days.setdefault((*key, today()), set()).add(column)
    if not dry_run:
        for key, columns in changed_days.items():
            row = days[key]
            row.save(force_insert=True) if row._state.adding else row.save(update_fields=sorted(columns))

    live = agents.live().count()
    have_live = stored_live.live if stored_live else 0
    if have_live != live or stored_live is None:
        if have_live != live:
            report.append({"workspace": workspace_id, "project": None, "is_playground": None, "day": None,
                           "column": "live", "stored": have_live, "actual": live})
        if not dry_run:
            WorkspaceAgentCounter.objects.update_or_create(workspace_id=workspace_id, defaults={"live": live})
    return report


def _dated_usage(workspace_id) -> dict[tuple, dict[str, int]]:
    """``(project_id, is_playground, day)`` → the workspace's LLM tokens by kind and runs ended by outcome that
    day, from the steps and runs themselves."""
    out: dict[tuple, dict[str, int]] = {}
    steps = (
        AgentRunStep.objects.filter(run__agent__project__workspace_id=workspace_id)
        .filter(Q(prompt_tokens__gt=0) | Q(completion_tokens__gt=0))
        .annotate(day=TruncDate("created_at", tzinfo=datetime.UTC))
        .order_by()
        .values("run__agent__project_id", "run__agent__is_playground", "day")
        .annotate(prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"))
    )
    for row in steps:
        key = (row["run__agent__project_id"], row["run__agent__is_playground"], row["day"])
        out.setdefault(key, {}).update(prompt_tokens=row["prompt"], completion_tokens=row["completion"])
    runs = (
        AgentRun.objects.filter(agent__project__workspace_id=workspace_id, status__in=list(RUN_COLUMNS),
                                finished_at__isnull=False)
        .annotate(day=TruncDate("finished_at", tzinfo=datetime.UTC))
        .order_by()
        .values("agent__project_id", "agent__is_playground", "day", "status")
        .annotate(n=Count("pk"))
    )
    for row in runs:
        key = (row["agent__project_id"], row["agent__is_playground"], row["day"])
        out.setdefault(key, {})[RUN_COLUMNS[row["status"]]] = row["n"]
    return out
