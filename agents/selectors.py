"""Read queries for agents that are more than a plain queryset."""

from __future__ import annotations

import uuid
from decimal import Decimal
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Count, DecimalField, IntegerField, Q, QuerySet, Sum, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce

from projects.models import Issue, Project

from .choices import AgentStatus
from .models import AgentInstance, AgentRun, AgentType


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


def agent_queryset(project: Project | None = None) -> QuerySet[AgentInstance]:
    """Agents with everything their representation needs, in one query for any page size.

    Joins ``agent_type``, ``project`` and ``agent_type_revision``; ``assigned_issues_count`` is an annotation
    (``assigned_issues_count()``). Counting the queryset (the paginator) leaves the joins and the annotation out.
    With ``project``: that project's agents, each given that very instance as its ``project`` (no join).
    """
    if project is None:
        agents = AgentInstance.objects.select_related("agent_type", "project", "agent_type_revision")
    else:
        agents = project.agents.select_related("agent_type", "agent_type_revision")
    return agents.annotate(assigned_issues_count=assigned_issues_count())


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
    """Projects annotated with their agents' metrics, in one grouped query for any number of projects.

    Each project carries the keys of ``agent_metrics`` as attributes (``total_instances``,
    ``active_instances`` (WORKING), ``idle_instances``, ``waiting_instances``, ``paused_instances``,
    ``terminated_instances``, ``total_tasks_completed``, ``total_tokens_used`` (tokens),
    ``total_cost_incurred`` (USD, Decimal)); projects without agents show zeros. Playground agents
    (``is_playground``) are left out unless ``include_playground`` (as in the agent lists and metrics of
    the API). ``workspace`` is joined. Ordered by workspace name, then project name.
    """
    projects = Project.objects.all() if projects is None else projects
    counted = Q() if include_playground else Q(agents__is_playground=False)
    status_counts = {
        key: Count("agents", filter=counted & Q(agents__status=status)) for key, status in _STATUS_KEYS.items()
    }
    return (
        projects.select_related("workspace")
        .annotate(
            total_instances=Count("agents", filter=counted),
            **status_counts,
            total_tasks_completed=Coalesce(Sum("agents__tasks_completed", filter=counted), 0),
            total_tokens_used=Coalesce(Sum("agents__tokens_used", filter=counted), 0),
            total_cost_incurred=Coalesce(
                Sum("agents__cost_incurred", filter=counted),
                Value(Decimal("0")),
                output_field=DecimalField(max_digits=20, decimal_places=6),
            ),
        )
        .order_by("workspace__name", "name")
    )
