"""Usage per project and day (``UsageDay``): LLM steps add their split tokens and cost within their one statement,
finished runs count per outcome, the totals stay the sum of the days, and the recompute rebuilds the dated columns
from the steps and runs."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import counters, services
from agents.models import AgentRunStep, UsageDay
from agents.runtime import services as runtime
from agents.runtime.trace import step_record
from tests import factories

pytestmark = pytest.mark.django_db


def day_row(project, *, playground=False, day=None) -> UsageDay:
    return UsageDay.objects.get(project=project, is_playground=playground, day=day or counters.today())


def test_a_step_adds_its_split_tokens_and_cost_to_todays_row_in_one_statement(project, agent_type):
    agent = factories.AgentFactory(project=project, agent_type=agent_type)
    run = agent.runs.create(instruction="count")
    with CaptureQueriesContext(connection) as first:
        step_record(run.pk, kind="llm_call", name="m", prompt_tokens=30, completion_tokens=12,
                    cost=Decimal("0.002"), agent_id=agent.pk)
    with CaptureQueriesContext(connection) as second:
        step_record(run.pk, kind="llm_call", name="m", prompt_tokens=5, completion_tokens=1, cost=Decimal("0.001"),
                    agent_id=agent.pk)
    usage_statements = [q["sql"] for q in second if "agents_usageday" in q["sql"]]
    # The upsert of today's row (the agent's shard) is part of the step's one statement.
    assert len(usage_statements) == 1 and "ON CONFLICT (project_id, is_playground, day, shard)" in usage_statements[0]
    assert not any("agents_agentcounter" in q["sql"] for q in second)  # the totals row is not written any more
    assert len(first) == len(second)
    row = day_row(project)
    assert (row.prompt_tokens, row.completion_tokens, row.tokens_used, row.cost_incurred) == (
        35, 13, 48, Decimal("0.003"))
    assert counters.project_metrics(project)["total_tokens_used"] == 48


def test_usage_posted_without_a_split_counts_in_the_totals_only(project, agent_type):
    agent = factories.AgentFactory(project=project, agent_type=agent_type)
    services.agent_record_usage(agent, tokens=100, cost="0.5", tasks_completed=2)
    row = day_row(project)
    assert (row.tokens_used, row.prompt_tokens, row.completion_tokens, row.tasks_completed) == (100, 0, 0, 2)


def test_finished_runs_count_per_outcome_and_a_success_completes_a_task(project):
    agent = factories.AgentFactory(project=project, agent_type=factories.AgentTypeFactory(handler="builder"))
    for outcome in ("complete", "fail", "cancel"):
        run, _ = runtime.run_create(agent=agent, instruction=outcome)
        run.refresh_from_db()
        if outcome == "cancel":
            runtime.run_cancel(run)
            continue
        claimed = runtime.run_claim(run.pk, worker="w")
        if outcome == "complete":
            runtime.run_complete(claimed, {"ok": True})
        else:
            runtime.run_fail(claimed, code="boom", message="it broke")
    row = day_row(project)
    assert (row.runs_succeeded, row.runs_failed, row.runs_cancelled, row.tasks_completed) == (1, 1, 1, 1)
    assert counters.counters_recompute(dry_run=True) == []


def test_recompute_rebuilds_the_dated_columns_and_puts_undated_differences_on_today(project, agent_type, capsys):
    from django.core.management import call_command

    agent = factories.AgentFactory(project=project, agent_type=agent_type)
    run = agent.runs.create(instruction="count")
    step = step_record(run.pk, kind="llm_call", name="m", prompt_tokens=40, completion_tokens=2,
                       cost=Decimal("0.01"), agent_id=agent.pk)
    yesterday = counters.today() - datetime.timedelta(days=1)
    # The step happened yesterday; its usage row says today (written around the services).
    AgentRunStep.objects.filter(run=run, index=step.index).update(
        created_at=timezone.now() - datetime.timedelta(days=1))
    UsageDay.objects.filter(project=project).update(runs_failed=3)

    call_command("recompute_agent_counters", verbosity=2)
    out = capsys.readouterr().out
    assert f"prompt_tokens on {counters.today()} 40 → 0" in out and f"prompt_tokens on {yesterday} 0 → 40" in out
    assert f"runs_failed on {counters.today()} 3 → 0" in out
    assert (day_row(project, day=yesterday).prompt_tokens, day_row(project).prompt_tokens) == (40, 0)
    # The totals are the agents' (42 tokens, one cent): the undated tokens_used and cost stay on today's row.
    assert counters.project_metrics(project)["total_tokens_used"] == 42
    assert counters.counters_recompute(dry_run=True) == []


def test_usage_totals_and_the_subquery_agree_with_the_rows(project, agent_type):
    agent = factories.AgentFactory(project=project, agent_type=agent_type)
    playground = services.agent_spawn(project=project, agent_type=agent_type, name="draft", is_playground=True)
    services.agent_record_usage(agent, tokens=10, cost="1")
    services.agent_record_usage(playground, tokens=5, cost="2")
    assert counters.usage_totals(UsageDay.objects.filter(project=project))["tokens_used"] == 15
    assert counters.usage_totals(UsageDay.objects.none())["cost_incurred"] == Decimal("0")
    from projects.models import Project

    row = Project.objects.annotate(c=counters.usage_subquery("cost_incurred")).get(pk=project.pk)
    assert row.c == Decimal("1")


@pytest.mark.django_db(transaction=True)
def test_the_migration_dates_the_usage_and_back_puts_the_totals_on_the_counters(project, agent_type):
    from django.db.migrations.executor import MigrationExecutor

    from agents.models import AgentCounter

    agents = [factories.AgentFactory(project=project, agent_type=agent_type) for _ in range(3)]
    for n, agent in enumerate(agents):
        run = agent.runs.create(instruction="count")
        step_record(run.pk, kind="llm_call", name="m", prompt_tokens=10 * (n + 1), completion_tokens=n,
                    cost=Decimal("0.01"), agent_id=agent.pk, unpriced=n == 2)
    services.agent_record_usage(agents[0], tokens=100, cost="1", tasks_completed=2)  # undated usage
    totals = counters.project_metrics(project)
    assert (totals["total_tokens_used"], totals["total_unpriced_tokens"]) == (163, 32)

    executor = MigrationExecutor(connection)
    executor.migrate([("agents", "0011_unpriced_tokens")])
    with connection.cursor() as cursor:  # the counters hold the totals again (in shard 0)
        cursor.execute("SELECT SUM(tokens_used), SUM(cost_incurred), SUM(tasks_completed), SUM(unpriced_tokens) "
                       "FROM agents_agentcounter WHERE project_id = %s", [project.pk])
        assert cursor.fetchone() == (163, Decimal("1.03"), 2, 32)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes("agents"))

    assert counters.project_metrics(project) == totals
    row = UsageDay.objects.filter(project=project).aggregate(p=Sum("prompt_tokens"), c=Sum("completion_tokens"))
    assert row == {"p": 60, "c": 3}  # the steps, dated
    assert counters.counters_recompute(dry_run=True) == []
    assert AgentCounter.objects.filter(project=project).aggregate(n=Sum("idle"))["n"] == 3
