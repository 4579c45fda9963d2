"""The agent counters: per project, agents by status and usage per day; per workspace, live agents.

The project metrics, the list totals, the admin's charts, ``/metrics`` and the spawn's concurrency check read these
rows instead of aggregating the agents, runs and steps (O(fleet)). A project's counts and each of its days are spread
over up to ``COUNTER_SHARDS`` rows (an agent's changes go to its shard's row, ``shard_of``), so a fleet's runs
starting, stepping and finishing at once do not all wait for one row's lock; readers add the rows up. Every change
that moves a counter moves it in the transaction of the change, with one upsert (``INSERT ... ON CONFLICT DO UPDATE
SET n = n + excluded.n``, PostgreSQL and SQLite alike):

- ``agent_spawned``: ``agents.services.agent_spawn`` (under the workspace lock);
- ``agent_moved``: ``agents.services.agent_transition``, the one path of every status change;
- ``usage_added``: ``agents.services.agent_record_usage`` and the runtime's steps (today's ``UsageDay``; on
  PostgreSQL a step's upsert is part of the step's one statement, ``agents.runtime.trace``);
- ``run_finished``: the runtime's services, when a run succeeds, fails or is cancelled (today's ``UsageDay``), after
  the agent's transition: a transaction locks its ``AgentCounter`` row before its ``UsageDay`` row.

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
from django.db.models import BigIntegerField, Count, DecimalField, F, OuterRef, Q, Subquery, Sum, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from projects.models import Project, Workspace

from .choices import AgentStatus, RunStatus
from .models import AgentCounter, AgentInstance, AgentRun, AgentRunStep, UsageDay, WorkspaceAgentCounter

#: Counter rows per project (and playground flag, and day): an agent's changes go to the row of its shard
#: (``shard_of``).
COUNTER_SHARDS = 16
#: The ``AgentCounter`` column of each status (the wire value).
STATUS_COLUMNS = {status: status.value for status in AgentStatus}
#: The ``UsageDay`` totals, kept equal to the sums over the agents.
USAGE_COLUMNS = ("tasks_completed", "tokens_used", "cost_incurred")
#: The ``UsageDay`` total kept equal to the sum over the runs: tokens of models without a price.
UNPRICED = "unpriced_tokens"
#: The ``UsageDay`` column counting the runs that ended in each status.
RUN_COLUMNS = {RunStatus.SUCCEEDED: "runs_succeeded", RunStatus.FAILED: "runs_failed",
               RunStatus.CANCELLED: "runs_cancelled"}
_DAY_COLUMNS = (*USAGE_COLUMNS, "prompt_tokens", "completion_tokens", UNPRICED, *RUN_COLUMNS.values())
_STATUS = tuple(STATUS_COLUMNS.values())


def shard_of(agent_id) -> int:
    """The counter shard (0 .. ``COUNTER_SHARDS`` - 1) of the agent ``agent_id`` (a UUID or its text)."""
    return uuid.UUID(str(agent_id)).int % COUNTER_SHARDS


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


def _add_to_project(agent: AgentInstance, deltas: dict[str, Any]) -> None:
    """Add ``deltas`` (status column → amount) to the counter row of ``agent``'s project and shard, creating it."""
    key = {"project": agent.project_id, "is_playground": agent.is_playground, "shard": shard_of(agent.pk)}
    _upsert(AgentCounter, key, _STATUS, deltas)


def _add_to_day(agent: AgentInstance, deltas: dict[str, Any]) -> None:
    """Add ``deltas`` (``UsageDay`` column → amount) to today's row of ``agent``'s project and shard."""
    key = {"project": agent.project_id, "is_playground": agent.is_playground, "day": today(),
           "shard": shard_of(agent.pk)}
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
    _add_to_project(agent, {STATUS_COLUMNS[AgentStatus.IDLE]: 1})
    _add_to_workspace(workspace_id, 1)


def agent_moved(agent: AgentInstance, *, source: str, target: str) -> None:
    """Move ``agent`` from the ``source`` status column to ``target`` (and out of its workspace's live count when
    ``target`` is terminated). Call it in the transition's transaction, with the agent locked."""
    _add_to_project(agent, {STATUS_COLUMNS[source]: -1, STATUS_COLUMNS[target]: 1})
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
    unpriced_tokens: int = 0,
) -> None:
    """Add usage to today's ``UsageDay`` of ``agent``'s project, in the row of the agent's shard (``agent`` needs
    ``pk``, ``project_id`` and ``is_playground``), with one statement. Call it once per change, in the transaction
    that adds the usage to the agent: a second upsert of the row in one transaction can deadlock with a concurrent
    one's.

    Args:
        tokens: all tokens (default: ``prompt_tokens + completion_tokens``); usage posted without a split passes
            only this.
        prompt_tokens, completion_tokens: the input and output tokens of an LLM call.
        cost: USD. tasks_completed: tasks finished.
        unpriced_tokens: those of ``tokens`` whose model has no price (in no ``cost``).
    """
    tokens = prompt_tokens + completion_tokens if tokens is None else tokens
    deltas = {"tokens_used": tokens, "cost_incurred": cost, "tasks_completed": tasks_completed,
              "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, UNPRICED: unpriced_tokens}
    if any(deltas.values()):
        _add_to_day(agent, {key: n for key, n in deltas.items() if n})


def run_finished(agent: AgentInstance, *, status: str, tasks_completed: int = 0) -> None:
    """Count a run of ``agent`` that ended today in ``status`` (succeeded, failed or cancelled), with the
    ``tasks_completed`` it adds to the agent, in one statement. Call it in the transaction that ends the run, after
    the agent's transition (the ``AgentCounter`` row before the ``UsageDay`` row, in every transaction)."""
    deltas = {RUN_COLUMNS[status]: 1, "tasks_completed": tasks_completed}
    _add_to_day(agent, {key: n for key, n in deltas.items() if n})


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
    ``total_tasks_completed``, ``total_tokens_used`` (tokens), ``total_cost_incurred`` (USD, Decimal),
    ``total_unpriced_tokens`` (tokens of models without a price, in no cost).
    """
    playground = Q() if include_playground else Q(agent_counters__is_playground=False)
    usage = (*USAGE_COLUMNS, UNPRICED)
    row = Project.objects.filter(pk=project.pk).annotate(
        **{column: Coalesce(Sum(f"agent_counters__{column}", filter=playground), 0) for column in _STATUS},
        **{column: usage_subquery(column, include_playground=include_playground) for column in usage},
    ).values(*_STATUS, *usage).first() or {}
    totals = {column: row.get(column) or 0 for column in (*_STATUS, *usage)}
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
        "total_unpriced_tokens": totals[UNPRICED],
    }


def agent_count(project: Project, *, statuses=None, include_playground: bool = False) -> int:
    """How many agents ``project`` has (of ``statuses``, a collection of status values; default all), from its
    counter rows: the total of the agent list when it is filtered by nothing else."""
    total = agent_count_sql(project, statuses=statuses, include_playground=include_playground)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT ({total.sql})", total.params)
        return cursor.fetchone()[0]


def agent_count_sql(project: Project, *, statuses=None, include_playground: bool = False) -> RawSQL:
    """``agent_count`` as a scalar SQL subquery (``RawSQL``, an integer): a list reads it in its own page query
    (``syndarix.api.pagination``) instead of a query of its own. Raw SQL, like the upserts above: the ORM's
    ``Subquery`` of a ``Sum`` costs more to build and compile than the query it saves."""
    columns = [STATUS_COLUMNS[AgentStatus(s)] for s in statuses] if statuses else list(STATUS_COLUMNS.values())
    table, quote = AgentCounter._meta.db_table, connection.ops.quote_name
    total = " + ".join(f"{quote(table)}.{quote(column)}" for column in columns)
    playground = "" if include_playground else f" AND NOT {quote(table)}.{quote('is_playground')}"
    project_id = AgentCounter._meta.get_field("project").target_field.get_db_prep_value(project.pk, connection)
    return RawSQL(
        # CAST: PostgreSQL sums integers as numeric (a total of 3 would read 3.0 in JSON).
        f"SELECT CAST(COALESCE(SUM({total}), 0) AS BIGINT) FROM {quote(table)} "
        f"WHERE {quote(table)}.{quote('project_id')} = %s{playground}",
        (project_id,), output_field=BigIntegerField(),
    )


def workspace_live(workspace: Workspace) -> int:
    """The workspace's live (not terminated) agents, playground included, from its counter."""
    return WorkspaceAgentCounter.objects.filter(workspace=workspace).values_list("live", flat=True).first() or 0


def counters_recompute(*, workspaces=None, dry_run: bool = False) -> list[dict[str, Any]]:
    """Rebuild the counters of ``workspaces`` (default: every workspace) from the agents, runs and steps, and
    report the values that were wrong.

    What is rebuilt: the agents by status (``AgentCounter``) and the live agents (``WorkspaceAgentCounter``) from the
    agents; per day, the LLM steps' ``prompt_tokens`` / ``completion_tokens`` (by the step's time) and the runs
    ended per outcome (by ``finished_at``); per project, the totals ``tokens_used``, ``cost_incurred`` and
    ``tasks_completed`` against the sums over its agents and ``unpriced_tokens`` against the sum over its runs
    (usage posted through the API has no date of its own, so a difference is added to today's row). A wrong value
    spread over shard rows is rebuilt in the first of them; the others count 0 of it.

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


def _difference(workspace_id, project_id, is_playground, day, column: str, stored, actual) -> dict[str, Any]:
    return {"workspace": workspace_id, "project": project_id, "is_playground": is_playground, "day": day,
            "column": column, "stored": stored, "actual": actual}


def _rebuild(rows: list, want: dict[str, Any], *, report: list, where: tuple) -> list[str]:
    """Set the columns of ``want`` (column → true total) whose sum over ``rows`` (one key's shard rows, first shard
    first) differs: the total in the first row, 0 in the others. Reports each difference (``where``: workspace,
    project, playground flag, day) and returns the columns changed."""
    changed = []
    for column, value in want.items():
        have = sum(getattr(row, column) for row in rows)
        if have != value:
            changed.append(column)
            report.append(_difference(*where, column, have, value))
            for row in rows:
                setattr(row, column, value if row is rows[0] else 0)
    return changed


def _recompute_workspace(workspace_id, *, dry_run: bool) -> list[dict[str, Any]]:
    Workspace.objects.select_for_update().filter(pk=workspace_id).first()
    shards: dict[tuple, list[AgentCounter]] = {}
    for row in AgentCounter.objects.select_for_update().filter(project__workspace_id=workspace_id).order_by("pk"):
        shards.setdefault((row.project_id, row.is_playground), []).append(row)
    days: dict[tuple, list[UsageDay]] = {}
    for row in UsageDay.objects.select_for_update().filter(project__workspace_id=workspace_id).order_by("pk"):
        days.setdefault((row.project_id, row.is_playground, row.day), []).append(row)
    for rows in (*shards.values(), *days.values()):
        rows.sort(key=lambda row: row.shard)
    stored_live = WorkspaceAgentCounter.objects.select_for_update().filter(workspace_id=workspace_id).first()
    agents = AgentInstance.objects.filter(project__workspace_id=workspace_id).order_by()
    aggregates = {column: Count("pk", filter=Q(status=status)) for status, column in STATUS_COLUMNS.items()}
    actual = {
        (row["project_id"], row["is_playground"]): row
        for row in agents.values("project_id", "is_playground").annotate(
            **aggregates, **{column: Sum(column) for column in USAGE_COLUMNS})
    }
    for row in (
        AgentRun.objects.filter(agent__project__workspace_id=workspace_id).order_by()
        .values(project_id=F("agent__project_id"), is_playground=F("agent__is_playground"))
        .annotate(n=Sum(UNPRICED))
    ):
        actual.setdefault((row["project_id"], row["is_playground"]), {})[UNPRICED] = row["n"]
    report: list[dict[str, Any]] = []
    for key in sorted(set(shards) | set(actual), key=str):
        rows = shards.get(key) or [AgentCounter(project_id=key[0], is_playground=key[1], shard=0)]
        changed = _rebuild(rows, {column: actual.get(key, {}).get(column) or 0 for column in _STATUS},
                           report=report, where=(workspace_id, *key, None))
        if changed and not dry_run:
            for row in rows:
                row.save(update_fields=changed) if key in shards else row.save(force_insert=True)

    changed_days: dict[tuple, set[str]] = {}

    def day_rows(key: tuple) -> list[UsageDay]:
        if key not in days:
            days[key] = [UsageDay(project_id=key[0], is_playground=key[1], day=key[2], shard=0)]
        return days[key]

    exact = _dated_usage(workspace_id)
    for key in sorted(set(days) | set(exact), key=str):
        want = {column: exact.get(key, {}).get(column, 0)
                for column in ("prompt_tokens", "completion_tokens", *RUN_COLUMNS.values())}
        changed = _rebuild(day_rows(key), want, report=report, where=(workspace_id, *key))
        changed_days.setdefault(key, set()).update(changed)
    zero = {"cost_incurred": Decimal("0")}
    totals = (*USAGE_COLUMNS, UNPRICED)
    sums: dict[tuple, dict[str, Any]] = {}
    for key, rows in days.items():
        total = sums.setdefault(key[:2], {column: zero.get(column, 0) for column in totals})
        for column in totals:
            total[column] += sum(getattr(row, column) for row in rows)
    for key in sorted(set(actual) | set(sums), key=str):
        for column in totals:
            have = sums.get(key, {}).get(column, zero.get(column, 0))
            want = actual.get(key, {}).get(column) or zero.get(column, 0)
            if have != want:
                report.append(_difference(workspace_id, *key, None, column, have, want))
                row = day_rows((*key, today()))[0]
                setattr(row, column, getattr(row, column) + want - have)
                changed_days.setdefault((*key, today()), set()).add(column)
    if not dry_run:
        for key, columns in changed_days.items():
            for row in days[key] if columns else ():
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
