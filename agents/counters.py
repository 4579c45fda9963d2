"""The agent counters: per project, agents by status and usage totals; per workspace, live agents.

The project metrics, the list totals and the spawn's concurrency check read these rows (O(1)) instead of
aggregating the agents (O(fleet)). A project's counts are spread over up to ``COUNTER_SHARDS`` rows (an agent's
changes go to its shard's row, ``shard_of``), so a fleet's runs starting, stepping and finishing at once do not all
wait for one row's lock; readers add the rows up. Every change that moves a counter moves it in the transaction of
the change, with one upsert (``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n``, PostgreSQL and SQLite
alike):

- ``agent_spawned``: ``agents.services.agent_spawn`` (under the workspace lock);
- ``agent_moved``: ``agents.services.agent_transition``, the one path of every status change;
- ``usage_added``: ``agents.services.agent_record_usage`` and the runtime's steps and completed runs.

Agents are never deleted one by one (they are terminated); they go with their project, and the project's counter
rows with them. ``counters_recompute`` (the ``recompute_agent_counters`` command) rebuilds the rows from the agents,
for data written around the services (a restore, bulk SQL).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import BigIntegerField, Count, F, Q, Sum
from django.db.models.expressions import RawSQL

from projects.models import Project, Workspace

from .choices import AgentStatus
from .models import AgentCounter, AgentInstance, AgentRun, WorkspaceAgentCounter

#: Counter rows per project (and playground flag): an agent's changes go to the row of its shard (``shard_of``).
COUNTER_SHARDS = 16
#: The ``AgentCounter`` column of each status (the wire value).
STATUS_COLUMNS = {status: status.value for status in AgentStatus}
USAGE_COLUMNS = ("tasks_completed", "tokens_used", "cost_incurred")
#: Columns rebuilt from the runs rather than the agents.
RUN_COLUMNS = ("unpriced_tokens",)
_COLUMNS = (*STATUS_COLUMNS.values(), *USAGE_COLUMNS, *RUN_COLUMNS)


def shard_of(agent_id) -> int:
    """The counter shard (0 .. ``COUNTER_SHARDS`` - 1) of the agent ``agent_id`` (a UUID or its text)."""
    return uuid.UUID(str(agent_id)).int % COUNTER_SHARDS


def _add_to_project(project_id, is_playground: bool, deltas: dict[str, Any], *, shard: int) -> None:
    """Add ``deltas`` (column → amount) to the project's counter row of ``shard``, creating the row when missing."""
    table, quote = AgentCounter._meta.db_table, connection.ops.quote_name
    values = [deltas.get(column, 0) for column in _COLUMNS]
    names = ", ".join(quote(column) for column in _COLUMNS)
    updates = ", ".join(
        f"{quote(column)} = {quote(table)}.{quote(column)} + excluded.{quote(column)}"
        for column in _COLUMNS if column in deltas
    )
    pk = AgentCounter._meta.pk.get_db_prep_value(uuid.uuid4(), connection)
    project = AgentCounter._meta.get_field("project").target_field.get_db_prep_value(project_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(table)} (id, project_id, is_playground, shard, {names}) "
            f"VALUES (%s, %s, %s, %s, {', '.join(['%s'] * len(_COLUMNS))}) "
            f"ON CONFLICT (project_id, is_playground, shard) DO UPDATE SET {updates}",
            [pk, project, is_playground, shard, *values],
        )


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
    _add_to_project(agent.project_id, agent.is_playground, {STATUS_COLUMNS[AgentStatus.IDLE]: 1},
                    shard=shard_of(agent.pk))
    _add_to_workspace(workspace_id, 1)


def agent_moved(agent: AgentInstance, *, source: str, target: str) -> None:
    """Move ``agent`` from the ``source`` status column to ``target`` (and out of its workspace's live count when
    ``target`` is terminated). Call it in the transition's transaction, with the agent locked."""
    _add_to_project(agent.project_id, agent.is_playground, {STATUS_COLUMNS[source]: -1, STATUS_COLUMNS[target]: 1},
                    shard=shard_of(agent.pk))
    if target == AgentStatus.TERMINATED:
        if AgentInstance.project.is_cached(agent):
            workspace_id = agent.project.workspace_id
        else:
            workspace_id = Project.objects.filter(pk=agent.project_id).values_list("workspace_id", flat=True).get()
        _add_to_workspace(workspace_id, -1)


def usage_added(agent: AgentInstance, *, tokens: int = 0, cost: Decimal = Decimal("0"), tasks_completed: int = 0,
                unpriced_tokens: int = 0):
    """Add usage (tokens, USD, tasks; ``unpriced_tokens``: those of ``tokens`` whose model has no price) to the
    totals of ``agent``'s project (``agent`` needs ``pk``, ``project_id`` and ``is_playground``), in the row of the
    agent's shard. Call it once per change, in the transaction that adds the usage to the agent: a second upsert of
    the row in one transaction can deadlock with a concurrent one's."""
    deltas = {"tokens_used": tokens, "cost_incurred": cost, "tasks_completed": tasks_completed,
              "unpriced_tokens": unpriced_tokens}
    if any(deltas.values()):
        _add_to_project(agent.project_id, agent.is_playground, {key: n for key, n in deltas.items() if n},
                        shard=shard_of(agent.pk))


def project_metrics(project: Project, *, include_playground: bool = False) -> dict[str, Any]:
    """The project's agent metrics from its counter rows, in one query.

    Returns the shape of ``agents.selectors.agent_metrics``: ``total_instances``, ``active_instances``
    (WORKING), ``idle_instances``, ``waiting_instances``, ``paused_instances``, ``terminated_instances``,
    ``total_tasks_completed``, ``total_tokens_used`` (tokens), ``total_cost_incurred`` (USD, Decimal),
    ``total_unpriced_tokens`` (tokens of models without a price, in no cost).
    """
    rows = AgentCounter.objects.filter(project=project)
    if not include_playground:
        rows = rows.filter(is_playground=False)
    totals = {column: 0 for column in _COLUMNS}
    for row in rows.values(*_COLUMNS):
        for column in _COLUMNS:
            totals[column] += row[column]
    return {
        "total_instances": sum(totals[column] for column in STATUS_COLUMNS.values()),
        "active_instances": totals["working"],
        "idle_instances": totals["idle"],
        "waiting_instances": totals["waiting"],
        "paused_instances": totals["paused"],
        "terminated_instances": totals["terminated"],
        "total_tasks_completed": totals["tasks_completed"],
        "total_tokens_used": totals["tokens_used"],
        "total_cost_incurred": Decimal(totals["cost_incurred"]),
        "total_unpriced_tokens": totals["unpriced_tokens"],
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
    """Rebuild the counters of ``workspaces`` (default: every workspace) from the agents, and report the rows
    that were wrong.

    One transaction per workspace: the workspace is locked (no spawn meanwhile) and its counter rows are locked
    before the agents are aggregated, so a concurrent transition or usage either committed before the aggregate
    (and is in it) or adds its change after the rebuilt value is saved. Rows that count nothing are kept.

    Returns one ``{"workspace", "project", "is_playground", "column", "stored", "actual"}`` per value that differed
    (``project``/``is_playground`` ``None`` for the workspace's ``live``). With ``dry_run`` nothing is written.
    """
    workspaces = Workspace.objects.all() if workspaces is None else workspaces
    report: list[dict[str, Any]] = []
    for workspace_id in workspaces.order_by("pk").values_list("pk", flat=True):
        with transaction.atomic():
            report += _recompute_workspace(workspace_id, dry_run=dry_run)
    return report


def _recompute_workspace(workspace_id, *, dry_run: bool) -> list[dict[str, Any]]:
    Workspace.objects.select_for_update().filter(pk=workspace_id).first()
    shards: dict[tuple, list[AgentCounter]] = {}
    for row in AgentCounter.objects.select_for_update().filter(project__workspace_id=workspace_id).order_by("pk"):
        shards.setdefault((row.project_id, row.is_playground), []).append(row)
    for rows in shards.values():
        rows.sort(key=lambda row: row.shard)
    stored_live = WorkspaceAgentCounter.objects.select_for_update().filter(workspace_id=workspace_id).first()
    aggregates = {column: Count("pk", filter=Q(status=status)) for status, column in STATUS_COLUMNS.items()}
    actual = {
        (row["project_id"], row["is_playground"]): row
        for row in AgentInstance.objects.filter(project__workspace_id=workspace_id)
        .order_by()
        .values("project_id", "is_playground")
        .annotate(**aggregates, **{column: Sum(column) for column in USAGE_COLUMNS})
    }
    for row in (
        AgentRun.objects.filter(agent__project__workspace_id=workspace_id)
        .order_by()
        .values(project_id=F("agent__project_id"), is_playground=F("agent__is_playground"))
        .annotate(**{column: Sum(column) for column in RUN_COLUMNS})
    ):
        actual.setdefault((row["project_id"], row["is_playground"]), {}).update(
            {column: row[column] for column in RUN_COLUMNS}
        )
    report = []
    for key in sorted(set(shards) | set(actual), key=str):
        # A wrong total is rebuilt in the key's first shard row; its other shard rows count 0 of that column.
        rows = shards.get(key) or [AgentCounter(project_id=key[0], is_playground=key[1], shard=0)]
        values = actual.get(key, {})
        changed = []
        for column in _COLUMNS:
            want = values.get(column) or 0
            have = sum(getattr(row, column) for row in rows)
            if have != want:
                changed.append(column)
                report.append({"workspace": workspace_id, "project": key[0], "is_playground": key[1],
                               "column": column, "stored": have, "actual": want})
                for row in rows:
                    setattr(row, column, want if row is rows[0] else 0)
        if changed and not dry_run:
            for row in rows:
                row.save(update_fields=changed) if key in shards else row.save(force_insert=True)
    live = AgentInstance.objects.filter(project__workspace_id=workspace_id).live().count()
    have_live = stored_live.live if stored_live else 0
    if have_live != live or stored_live is None:
        if have_live != live:
            report.append({"workspace": workspace_id, "project": None, "is_playground": None, "column": "live",
                           "stored": have_live, "actual": live})
        if not dry_run:
            WorkspaceAgentCounter.objects.update_or_create(workspace_id=workspace_id, defaults={"live": live})
    return report
