"""The admin's usage charts: the index's over the projects a user sees (the biggest projects apart), a project's page,
their text alternatives, and a query count that does not grow with projects, days or rows."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agents import charts, counters
from agents.models import UsageDay
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def usage(project, days_ago: int, *, cost="0", tokens=0, prompt=0, completion=0, succeeded=0, failed=0,
          playground=False) -> UsageDay:
    return UsageDay.objects.create(
        project=project, is_playground=playground, day=counters.today() - datetime.timedelta(days=days_ago),
        cost_incurred=Decimal(cost), tokens_used=tokens, prompt_tokens=prompt, completion_tokens=completion,
        runs_succeeded=succeeded, runs_failed=failed,
    )


def chart(page_context, key: str) -> dict:
    return next(c for c in page_context["usage"]["charts"] if c["key"] == key)


def test_bar_chart_stacks_series_on_a_rounded_axis_with_its_numbers():
    days = charts.chart_days()
    values = [0.0] * len(days)
    values[-1], values[-2] = 0.7, 0.3
    drawn = charts.bar_chart(key="cost", title="Cost per day", unit="USD", days=days, series=[
        charts.Series("A", "#000", values), charts.Series("B", "#111", [0.1] + [0.0] * (len(days) - 1))])
    assert [g["label"] for g in drawn["grid"]] == ["0", "0.5", "1"]  # 0.7 rounds up to 1
    last = drawn["bars"][-1]["segments"][0]
    assert (last["y"], last["height"]) == (30.0, 70.0) and last["title"].endswith("A: 0.7000 USD")
    assert drawn["table"]["totals"] == (["1.00", "0.1000"], "1.10")
    assert "1.10 USD in all" in drawn["summary"]
    empty = charts.bar_chart(key="runs", title="Runs", unit="runs", days=days, series=[])
    assert empty["summary"].endswith(": 0 runs.") and all(not bar["segments"] for bar in empty["bars"])


def test_the_index_charts_the_biggest_projects_apart_and_the_rest_together(client, superuser, workspace):
    projects = [ProjectFactory(workspace=workspace, name=f"P{n}") for n in range(7)]
    for n, project in enumerate(projects):
        usage(project, 0, cost=str(n + 1), tokens=100 * (7 - n), succeeded=1)
    usage(projects[0], 3, failed=2)
    usage(projects[6], 31, cost="100")  # older than the charts
    usage(projects[6], 0, cost="50", playground=True)  # playground: not counted
    client.force_login(superuser)
    context = client.get(reverse("admin:index")).context
    cost = chart(context, "cost")
    assert [item["label"] for item in cost["legend"]] == ["P6", "P5", "P4", "P3", "P2", "Other projects"]
    assert cost["table"]["totals"][1] == "28.00" and cost["table"]["rows"][-1][1][-1] == "3.00"  # P1 + P0
    assert [item["label"] for item in chart(context, "tokens")["legend"]][:2] == ["P0", "P1"]
    runs = chart(context, "runs")
    assert runs["table"]["head"] == ["Succeeded", "Failed", "Cancelled"]
    assert runs["table"]["totals"] == (["7", "2", "0"], "9")


def test_the_index_shows_a_user_only_the_usage_of_their_workspaces(client, workspace):
    mine, theirs = ProjectFactory(workspace=workspace, name="Mine"), ProjectFactory(name="Theirs")
    usage(mine, 1, cost="2")
    usage(theirs, 1, cost="5")
    user = UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_agentinstance"))
    MembershipFactory(workspace=workspace, user=user, role="viewer")
    client.force_login(user)
    html = client.get(reverse("admin:index")).content.decode()
    assert "Usage, last 30 days" in html and "Mine" in html and "Theirs" not in html
    assert "5.00" not in html.split('id="usage-fleet"')[1]


def test_charts_carry_text_alternatives(client, superuser, project):
    usage(project, 0, cost="1.5", tokens=10)
    client.force_login(superuser)
    html = client.get(reverse("admin:index")).content.decode()
    section = html[html.index('id="usage-fleet"'):]
    assert 'role="img"' in section and 'aria-label="Cost per day, ' in section
    assert f"<title>{charts.date_format(counters.today(), 'M j')} · {project.name}: 1.50 USD</title>" in section
    assert "<summary>Numbers</summary>" in section and "<caption>Cost per day (USD), UTC days</caption>" in section


def test_the_index_is_a_fixed_number_of_queries_whatever_the_usage(client, superuser, workspace):
    client.force_login(superuser)
    url = reverse("admin:index")
    project = ProjectFactory(workspace=workspace)
    usage(project, 0, cost="1")
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    for n in range(8):
        other = ProjectFactory(workspace=workspace)
        for day in range(0, 30, 3):
            usage(other, day, cost=str(n + 1), tokens=day + 1, succeeded=1)
    with CaptureQueriesContext(connection) as many:
        response = client.get(url)
    assert len(chart(response.context, "cost")["legend"]) == 6
    assert len(many) == len(few)
    chart_queries = [q["sql"] for q in many if "agents_usageday" in q["sql"]]
    assert len(chart_queries) == 3 + 1  # top by cost, top by tokens, per day; and the summary's totals


def test_a_projects_page_charts_its_own_usage(client, superuser, project):
    other = ProjectFactory(workspace=project.workspace)
    usage(project, 2, cost="0.25", prompt=300, completion=30, tokens=400, succeeded=2)
    usage(other, 2, cost="9")
    client.force_login(superuser)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("admin:projects_project_change", args=[project.pk]))
    assert response.status_code == 200
    assert chart(response.context, "cost")["table"]["totals"][1] == "0.2500"
    tokens = chart(response.context, "tokens")
    assert tokens["table"]["head"] == ["Input", "Output", "Posted (no split)"]
    assert tokens["table"]["totals"] == (["300", "30", "70"], "400")
    assert 'id="usage-project"' in response.content.decode()
    assert sum("agents_usageday" in q["sql"] for q in queries) == 1


def test_staff_who_may_not_view_agents_see_no_charts(client, project):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_project"))
    MembershipFactory(workspace=project.workspace, user=user, role="viewer")
    client.force_login(user)
    assert "usage" not in client.get(reverse("admin:index")).context
    response = client.get(reverse("admin:projects_project_change", args=[project.pk]))
    assert response.status_code == 200 and "usage" not in response.context
