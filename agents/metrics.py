"""The fleet-wide Prometheus series of agents and runs, read from the database when ``/metrics`` is scraped
(``syndarix.metrics``; ``fleet_series`` is the ``database`` source, registered by ``AgentsConfig.ready``).

Every series covers all workspaces and projects, playground agents included; labels are statuses and token kinds
(bounded). Three indexed queries per scrape, whatever the fleet's size: the counter rows (agents by status), the
usage rows (``UsageDay``: runs ended, tokens, cost) and the unfinished runs by status (the ``status`` index).
"""

from __future__ import annotations

from django.db.models import Count, Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .choices import RUN_FINISHED_STATUSES, AgentStatus, RunStatus
from .counters import RUN_COLUMNS, STATUS_COLUMNS, usage_totals
from .models import AgentCounter, AgentRun, UsageDay

#: Run states of ``syndarix_runs_in_progress``.
IN_PROGRESS_STATUSES = [status for status in RunStatus if status not in RUN_FINISHED_STATUSES]


def fleet_series() -> list[Metric]:
    """The ``database`` source of ``/metrics`` (``syndarix.metrics.register_source``):

    - ``syndarix_runs_total{status}`` (counter): runs that ended ``succeeded``, ``failed`` or ``cancelled``;
    - ``syndarix_runs_in_progress{status}`` (gauge): runs ``queued``, ``running``, ``waiting`` or ``paused`` now;
    - ``syndarix_agents{status}`` (gauge): agents by lifecycle status, terminated included;
    - ``syndarix_llm_tokens_total{type}`` (counter): ``input`` (prompt) and ``output`` (completion) tokens of the
      runtime's LLM calls;
    - ``syndarix_llm_cost_usd_total`` (counter): USD of all usage (LLM calls and usage posted through the API);
    - ``syndarix_llm_unpriced_tokens_total`` (counter): tokens of LLM calls whose model has no price (metered at 0
      USD, so in no cost).

    Counters only grow while projects live; deleting a project takes its usage with it (Prometheus sees a reset).
    Raises ``DatabaseError`` when the database does not answer.
    """
    agents = AgentCounter.objects.aggregate(**{column: Sum(column) for column in STATUS_COLUMNS.values()})
    usage = usage_totals(UsageDay.objects.all())
    unfinished = dict(
        AgentRun.objects.filter(status__in=IN_PROGRESS_STATUSES).order_by().values_list("status")
        .annotate(n=Count("pk"))
    )
    runs = CounterMetricFamily("syndarix_runs", "Runs that ended in each status.", labels=["status"])
    for status, column in RUN_COLUMNS.items():
        runs.add_metric([status.value], usage[column])
    in_progress = GaugeMetricFamily("syndarix_runs_in_progress", "Runs not ended yet, by status.", labels=["status"])
    for status in IN_PROGRESS_STATUSES:
        in_progress.add_metric([status.value], unfinished.get(status.value, 0))
    by_status = GaugeMetricFamily("syndarix_agents", "Agents by lifecycle status.", labels=["status"])
    for status in AgentStatus:
        by_status.add_metric([status.value], agents[STATUS_COLUMNS[status]] or 0)
    tokens = CounterMetricFamily("syndarix_llm_tokens", "Tokens of the runtime's LLM calls.", labels=["type"])
    tokens.add_metric(["input"], usage["prompt_tokens"])
    tokens.add_metric(["output"], usage["completion_tokens"])
    cost = CounterMetricFamily("syndarix_llm_cost_usd", "Cost of the agents' usage (USD).",
                               value=float(usage["cost_incurred"]))
    unpriced = CounterMetricFamily("syndarix_llm_unpriced_tokens", "Tokens of models without a price (in no cost).",
                                   value=usage["unpriced_tokens"])
    return [runs, in_progress, by_status, tokens, cost, unpriced]
