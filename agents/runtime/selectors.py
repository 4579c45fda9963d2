"""Reads of runs: the lists of the API and the admin, and the operations dashboard."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone

from ..choices import RunRequestStatus, RunStatus
from ..models import AgentInstance, AgentRun, AgentRunRequest

#: Most steps a run's detail carries (``GET .../runs/{id}``); ``.../runs/{id}/steps`` pages through all.
DETAIL_STEPS_LIMIT = 100


def run_queryset() -> QuerySet[AgentRun]:
    """Runs with everything their representation needs, in a fixed number of queries for any page size:
    the agent, its project and the requesting user joined; pending requests prefetched."""
    return AgentRun.objects.select_related("agent__project", "requested_by", "issue").prefetch_related(
        Prefetch(
            "requests",
            queryset=AgentRunRequest.objects.filter(status=RunRequestStatus.PENDING).order_by("requested_at"),
            to_attr="pending_requests",
        )
    )


def run_steps(run: AgentRun) -> list:
    """The run's first ``DETAIL_STEPS_LIMIT`` steps, in order."""
    return list(run.steps.order_by("index")[:DETAIL_STEPS_LIMIT])


def pending_requests() -> QuerySet[AgentRunRequest]:
    """Every request waiting for a person (approvals, input, connections), oldest first, with run, agent and
    project joined: the dashboard's "waiting for you"."""
    return (
        AgentRunRequest.objects.filter(status=RunRequestStatus.PENDING)
        .select_related("run__agent__project")
        .order_by("requested_at")
    )


def stale_heartbeats(*, now=None) -> QuerySet[AgentInstance]:
    """Agents with a ``running`` run whose heartbeat is older than ``AGENT_HEARTBEAT_TIMEOUT_SECONDS``."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.AGENT_HEARTBEAT_TIMEOUT_SECONDS)
    return (
        AgentInstance.objects.filter(runs__status=RunStatus.RUNNING)
        .filter(Q(last_heartbeat_at__lt=cutoff) | Q(last_heartbeat_at__isnull=True))
        .select_related("project")
        .distinct()
    )


def run_counts_capped(runs: QuerySet[AgentRun], *, statuses, cap: int) -> dict[str, int]:
    """Runs of ``runs`` in each of ``statuses``, each counted up to ``cap`` (``cap + 1`` means "more than ``cap``"):
    one bounded query per status (``COUNT(*)`` over ``LIMIT cap + 1`` rows of the status index), so a backlog of
    a hundred thousand runs costs what a thousand do."""
    return {status: runs.filter(status=status).order_by()[: cap + 1].count() for status in statuses}


def run_counts(runs: QuerySet[AgentRun] | None = None) -> dict[str, int]:
    """Runs by status over ``runs`` (default: all runs), in one aggregate query: ``{"queued": n, "running": n}``
    and so on for every status."""
    runs = AgentRun.objects.all() if runs is None else runs
    row = runs.order_by().aggregate(**{s: Count("pk", filter=Q(status=s)) for s in RunStatus.values})
    return {status: row[status] for status in RunStatus.values}
