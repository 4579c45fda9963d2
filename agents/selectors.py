"""Read queries for agents that are more than a plain queryset."""

from __future__ import annotations

import uuid
from decimal import Decimal
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Count, F, IntegerField, Q, QuerySet, Sum, Value
from django.db.models.expressions import RawSQL

from projects.models import Issue, Project
from syndarix.db import fetch_compiled

from .choices import AgentStatus
from .models import AgentInstance, AgentRun, AgentType, AgentTypeRevision


def agent_type_by_id_or_slug(value: str) -> AgentType | None:
    """The agent type whose id (a UUID) or slug is ``value``, or ``None``."""
    try:
        return AgentType.objects.filter(pk=uuid.UUID(str(value))).first()
    except ValueError:
        return AgentType.objects.filter(slug=value).first()


@cache
def assigned_issues_count() -> RawSQL:
    """The number of issues assigned to the outer agent: a correlated subquery on the issues' ``assigned_agent``
    index, evaluated only for the rows a page returns (never a join + GROUP BY over the whole fleet).

    Raw SQL naming the agent table (the base table of every query that annotates with it), built once: the ORM's
    ``Subquery`` of a ``Count`` cost more to build and compile on each request than the page query it is part of
    takes to run."""
    issue, agent, quote = Issue._meta.db_table, AgentInstance._meta.db_table, connection.ops.quote_name
    column = Issue._meta.get_field("assigned_agent").column
    return RawSQL(
        f"SELECT COUNT(*) FROM {quote(issue)} WHERE {quote(issue)}.{quote(column)} = {quote(agent)}.{quote('id')}",
        (), output_field=IntegerField(),
    )


#: What an agent's representation shows of its type and its template revision (``AgentInstanceSerializer``: the
#: type's id, name and slug, the revision's id and version).
REPRESENTED_RELATED_FIELDS = {AgentType: ("id", "name", "slug"), AgentTypeRevision: ("id", "version")}


@cache
def unrepresented_related_fields() -> tuple[str, ...]:
    """``defer()`` paths of every field of the joined type and revision that the representation does not show (the
    type's description, capabilities, config schema, handler and limits; the revision's template and message)."""
    return tuple(
        f"{relation}__{field.name}"
        for relation, model in (("agent_type", AgentType), ("agent_type_revision", AgentTypeRevision))
        for field in model._meta.concrete_fields
        if field.name not in REPRESENTED_RELATED_FIELDS[model]
    )


def agent_queryset(project: Project | None = None, *, represented_only: bool = False) -> QuerySet[AgentInstance]:
    """Agents with everything their representation needs, in one query for any page size.

    Joins ``agent_type``, ``project`` and ``agent_type_revision``; ``assigned_issues_count`` is an annotation
    (``assigned_issues_count()``). Counting the queryset (the paginator) leaves the joins and the annotation out.
    With ``project``: that project's agents, each given that very instance as its ``project`` (no join).

    With ``represented_only`` (the API's reads, which answer with the representation and nothing else): the joined
    type and revision load only what the representation shows (``REPRESENTED_RELATED_FIELDS``); their other fields
    (a type's JSON schema and capabilities, a revision's template) are neither sent by PostgreSQL nor decoded for
    each row. Reading a deferred field later costs a query of its own, so a caller that uses the type or the revision
    beyond the representation (the services behind the writes: ``agents.services.agent_lock``) loads them whole.
    """
    if project is None:
        agents = AgentInstance.objects.select_related("agent_type", "project", "agent_type_revision")
    else:
        agents = project.agents.select_related("agent_type", "agent_type_revision")
    return _with_representation(agents, represented_only=represented_only)


def _with_representation(agents: QuerySet[AgentInstance], *, represented_only: bool) -> QuerySet[AgentInstance]:
    if represented_only:
        agents = agents.defer(*unrepresented_related_fields())
    return agents.annotate(assigned_issues_count=assigned_issues_count())


def represented_agent(project: Project, agent_id: uuid.UUID) -> AgentInstance | None:
    """Agent ``agent_id`` of ``project`` as ``agent_queryset(project, represented_only=True)`` reads it (its
    ``project`` is that very instance), or ``None`` when the project has no such agent.

    The API's one-agent reads (the detail, its metrics and ledger). One query, whose SQL is compiled once per process
    (``syndarix.db.fetch_compiled``): building and compiling this queryset (two joins, the deferred fields, the
    issue count) took several times the CPU PostgreSQL spends answering it."""
    rows = fetch_compiled("agents.represented_agent", lambda: _with_representation(
        AgentInstance.objects.select_related("agent_type", "agent_type_revision").filter(project_id=project.pk)
        .filter(pk=agent_id), represented_only=True), [project.pk, agent_id])
    if not rows:
        return None
    rows[0].project = project
    return rows[0]


_STATUS_KEYS = {
    "active_instances": AgentStatus.WORKING,
    "idle_instances": AgentStatus.IDLE,
    "waiting_instances": AgentStatus.WAITING,
    "paused_instances": AgentStatus.PAUSED,
    "terminated_instances": AgentStatus.TERMINATED,
}


def agent_metrics(queryset: QuerySet[AgentInstance]) -> dict[str, Any]:
    """Aggregate usage over ``queryset`` in one query.

    Returns ``{"total_instances", "active_instances" (WORKING), "idle_instances",
    "waiting_instances", "paused_instances", "terminated_instances", "total_tasks_completed",
    "total_tokens_used" (tokens), "total_cost_incurred" (USD, Decimal), "total_unpriced_tokens" (tokens of models
    without a price, summed over the agents' runs: a second query)}``.
    """
    aggregates = {key: Count("pk", filter=Q(status=status)) for key, status in _STATUS_KEYS.items()}
    row = queryset.order_by().aggregate(
        total_instances=Count("pk"),
        **aggregates,
        total_tasks_completed=Sum("tasks_completed"),
        total_tokens_used=Sum("tokens_used"),
        total_cost_incurred=Sum("cost_incurred"),
    )
    row["total_tasks_completed"] = row["total_tasks_completed"] or 0
    row["total_tokens_used"] = row["total_tokens_used"] or 0
    row["total_cost_incurred"] = row["total_cost_incurred"] or Decimal("0")
    row["total_unpriced_tokens"] = (
        AgentRun.objects.filter(agent__in=queryset.order_by().values("pk")).aggregate(n=Sum("unpriced_tokens"))["n"]
        or 0
    )
    return row


def project_agent_summary(
    projects: QuerySet[Project] | None = None, *, include_playground: bool = False
) -> QuerySet[Project]:
    """Projects annotated with their agents' metrics from the counters (``agents.counters``), in one query for any
    number of projects and any fleet size.

    Each project carries the keys of ``agent_metrics`` as attributes (``total_instances``,
    ``active_instances`` (WORKING), ``idle_instances``, ``waiting_instances``, ``paused_instances``,
    ``terminated_instances``, ``total_tasks_completed``, ``total_tokens_used`` (tokens),
    ``total_cost_incurred`` (USD, Decimal)); projects without agents show zeros. Playground agents
    (``is_playground``) are left out unless ``include_playground`` (as in the agent lists and metrics of
    the API). ``workspace`` is joined. Ordered by workspace name, then project name.
    """
    from .counters import counter_subquery, usage_subquery

    projects = Project.objects.all() if projects is None else projects
    every_status = sum((F(status.value) for status in AgentStatus), Value(0))
    # Correlated subqueries on the counters' indexes, no join and no GROUP BY: a page of projects reads a couple of
    # counter rows and its usage days each, however many agents and runs there are.
    return (
        projects.select_related("workspace")
        .annotate(
            total_instances=counter_subquery(every_status, include_playground=include_playground),
            **{key: counter_subquery(F(status.value), include_playground=include_playground)
               for key, status in _STATUS_KEYS.items()},
            total_tasks_completed=usage_subquery("tasks_completed", include_playground=include_playground),
            total_tokens_used=usage_subquery("tokens_used", include_playground=include_playground),
            total_cost_incurred=usage_subquery("cost_incurred", include_playground=include_playground),
        )
        .order_by("workspace__name", "name")
    )
