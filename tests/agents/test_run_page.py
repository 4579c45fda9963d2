"""The run page and the runs list as staff use them: the timeline, input forms generated from ``requestedSchema``,
the budget that paused a run, what each role is offered and why not, and finding a run by its id prefix."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from agents.choices import AgentStatus as S
from agents.choices import RunRequestKind, RunRequestStatus, RunStatus
from agents.models import AgentRun, AgentRunRequest, AgentRunStep
from agents.runtime.forms import RequestedSchemaForm, schema_form_supported
from agents.runtime.timeline import run_timeline, seconds_display
from tests.factories import AgentFactory, AgentTypeFactory, MembershipFactory, UserFactory, agent_in_status

pytestmark = pytest.mark.django_db

DEPLOY_SCHEMA = {
    "type": "object",
    "required": ["replicas", "environment"],
    "properties": {
        "environment": {"type": "string", "title": "Environment", "enum": ["stg", "stg-eu"],
                        "enumNames": ["Staging (US)", "Staging (EU)"]},
        "owner": {"type": "string", "format": "email", "title": "Owner"},
        "replicas": {"type": "integer", "minimum": 1, "maximum": 8},
        "ratio": {"type": "number", "maximum": 1.5},
        "start": {"type": "string", "format": "date"},
        "window": {"type": "string", "format": "date-time"},
        "link": {"type": "string", "format": "uri"},
        "notify": {"type": "boolean", "default": True},
        "note": {"type": "string", "maxLength": 5},
    },
}


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def waiting_for_input(schema, **agent_kwargs) -> tuple[AgentRun, AgentRunRequest]:
    agent = agent_in_status(S.WAITING, agent_type=AgentTypeFactory(handler="builder"), **agent_kwargs)
    run = AgentRun.objects.create(agent=agent, instruction="Deploy", status=RunStatus.WAITING)
    request = AgentRunRequest.objects.create(run=run, kind=RunRequestKind.INPUT, tool_name="request_input",
                                             message="Details, please.", requested_schema=schema)
    return run, request


def run_url(run) -> str:
    return reverse("admin:agents_agentrun_change", args=[run.pk])


# --- The timeline. ---


def test_the_timeline_places_steps_and_waits_from_the_runs_creation(superuser, project):
    agent = AgentFactory(project=project)
    t0 = timezone.now() - datetime.timedelta(minutes=5)
    run = AgentRun.objects.create(agent=agent, status=RunStatus.SUCCEEDED, created_at=t0,
                                  started_at=t0 + datetime.timedelta(seconds=2),
                                  finished_at=t0 + datetime.timedelta(seconds=100))
    at = lambda seconds: t0 + datetime.timedelta(seconds=seconds)  # noqa: E731
    llm = AgentRunStep.objects.create(run=run, index=0, kind="llm_call", name="m", created_at=at(5), duration_ms=3000,
                                      prompt_tokens=1200, completion_tokens=30, cost=Decimal("0.0042"))
    AgentRunStep.objects.create(run=run, index=1, kind="input", name="request_input", created_at=at(60))
    request = AgentRunRequest.objects.create(run=run, kind=RunRequestKind.INPUT, tool_name="request_input",
                                             status=RunRequestStatus.ANSWERED, requested_at=at(10),
                                             decided_at=at(60), decided_by=superuser)
    timeline = run_timeline(run, list(run.steps.all()), [request], now=at(500))
    queue, step, wait = timeline["rows"]
    assert (queue.kind, queue.start, queue.duration) == ("queue", 0.0, 2.0)
    assert (step.step, step.start, step.duration, step.left) == (llm, 2.0, 3.0, 2.0)
    assert step.detail == "1,200 in / 30 out tokens · 0.0042 USD"
    assert (wait.kind, wait.start, wait.duration, wait.width) == ("wait", 10.0, 50.0, 50.0)
    assert wait.detail.startswith(f"request_input: answered by {superuser.username} at ")
    assert timeline["span"] == 100.0 and timeline["waiting_display"] == "50.0 s"  # the run's end, not now
    assert [seconds_display(s) for s in (0.34, 2.44, 185, 7500)] == ["340 ms", "2.4 s", "3 min 5 s", "2 h 5 min"]


def test_the_run_page_shows_the_timeline_and_keeps_the_trace(admin_client, project):
    agent = AgentFactory(project=project)
    run = AgentRun.objects.create(agent=agent, status=RunStatus.RUNNING, started_at=timezone.now())
    AgentRunStep.objects.create(run=run, index=0, kind="tool_call", name="read_context", duration_ms=40)
    html = admin_client.get(run_url(run)).content.decode()
    assert 'id="run-timeline"' in html and '<a href="#step-0">#0</a> Tool call read_context' in html
    assert 'id="run-trace"' in html and 'id="step-0"' in html


# --- Input forms from requestedSchema. ---


def test_which_schemas_get_a_generated_form():
    assert schema_form_supported(DEPLOY_SCHEMA) and schema_form_supported({"type": "object"})
    assert not schema_form_supported({"type": "object", "properties": {"tags": {"type": "array"}}})
    assert not schema_form_supported({"type": "object", "properties": {"x": {"type": "string", "format": "ipv4"}}})
    assert not schema_form_supported({"type": "object", "properties": {"x": {"type": "string", "pattern": "a"}}})
    assert not schema_form_supported({"type": "object", "properties": {"x": {"enum": ["a"], "enumNames": []}}})
    assert not schema_form_supported({"type": "array"})


def test_the_form_asks_each_property_required_first_with_its_own_control():
    form = RequestedSchemaForm(schema=DEPLOY_SCHEMA)
    assert list(form.fields)[:2] == ["replicas", "environment"]  # the order of "required", then by name
    html = form.as_p()
    assert 'type="email"' in html and 'type="url"' in html and 'type="date"' in html
    assert 'type="datetime-local"' in html and 'type="checkbox"' in html and "Staging (EU)" in html
    assert 'name="content-replicas"' in html and 'min="1"' in html and 'max="8"' in html
    assert form.fields["notify"].initial is True and form.fields["environment"].required


def test_an_answer_is_checked_field_by_field_then_sent_as_typed_json(admin_client):
    run, request = waiting_for_input(DEPLOY_SCHEMA)
    answer = reverse("admin:agents_agentrun_answer", args=[run.pk])
    page = admin_client.get(run_url(run)).content.decode()
    assert "Replicas" in page and "(required)" in page and 'action="' + answer + '"' in page

    wrong = admin_client.post(answer, {"action": "accept", "content-replicas": "9", "content-owner": "nobody",
                                       "content-note": "too long", "content-environment": "prod"})
    assert wrong.status_code == 200
    errors = wrong.context["pending_rows"][0]["form"].errors
    assert set(errors) == {"replicas", "owner", "note", "environment"}
    assert "Ensure this value is less than or equal to 8." in errors["replicas"]
    assert 'value="nobody"' in wrong.content.decode()  # what was typed stays
    assert AgentRunRequest.objects.get(pk=request.pk).status == RunRequestStatus.PENDING

    admin_client.post(answer, {
        "action": "accept", "content-replicas": "3", "content-environment": "stg-eu", "content-ratio": "0.5",
        "content-start": "2026-12-14", "content-window": "2026-12-14T09:30", "content-link": "https://x.test/c",
        "content-owner": "ops@x.test",
    })
    request.refresh_from_db()
    assert request.status == RunRequestStatus.ANSWERED
    assert request.response["content"] == {
        "replicas": 3, "environment": "stg-eu", "ratio": 0.5, "start": "2026-12-14",
        "window": "2026-12-14T09:30:00+00:00", "link": "https://x.test/c", "owner": "ops@x.test", "notify": False,
    }


def test_schema_errors_of_the_service_land_on_their_fields():
    form = RequestedSchemaForm({"action": "accept", "content-replicas": "2", "content-environment": "stg"},
                               schema=DEPLOY_SCHEMA)
    assert form.is_valid()
    form.add_schema_errors({"content.replicas": ["2 is not allowed"], "content": ["something about the whole"]})
    assert form.errors["replicas"] == ["2 is not allowed"] and form.non_field_errors() == ["something about the whole"]


# --- The budget, roles and refusals. ---


def test_a_run_that_took_its_agent_over_budget_says_so(admin_client, project):
    agent = agent_in_status(S.PAUSED, project=project)
    run = AgentRun.objects.create(agent=agent, status=RunStatus.PAUSED, error_code="budget_exceeded",
                                  error_message="tokens: 1200 used of a budget of 1000")
    html = admin_client.get(run_url(run)).content.decode()
    assert 'id="run-budget"' in html and "took its agent over budget (tokens: 1200 used of a budget of 1000)" in html
    assert "resume the agent" in html


def staff(workspace, role: str):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=["agents", "projects"]))
    MembershipFactory(workspace=workspace, user=user, role=role)
    return user


def test_a_viewer_is_told_its_role_is_why_and_offered_no_answer(client, workspace, project):
    run, _ = waiting_for_input(DEPLOY_SCHEMA, project=project)
    client.force_login(staff(workspace, "viewer"))
    html = client.get(run_url(run)).content.decode()
    assert "Your role in its workspace is viewer: it may look, not change anything." in html
    assert "Can change agent run" not in html and 'name="content-replicas"' not in html and "Cancel run" not in html
    index = client.get(reverse("admin:index"))
    (row,) = index.context["runtime"]["waiting"]
    assert row["can_answer"] is False and ">Answer</a>" not in index.content.decode()
    assert "Spawn agent" not in index.content.decode()
    assert client.get(reverse("admin:agents_agentinstance_spawn")).status_code == 403
    assert 'name="action"' not in client.get(reverse("admin:agents_agentrun_changelist")).content.decode()


def test_an_operator_is_offered_answer_and_spawn(client, workspace, project):
    waiting_for_input(DEPLOY_SCHEMA, project=project)
    client.force_login(staff(workspace, "operator"))
    index = client.get(reverse("admin:index"))
    assert index.context["runtime"]["waiting"][0]["can_answer"] is True
    assert ">Answer</a>" in index.content.decode() and "Spawn agent" in index.content.decode()


def test_rollback_is_offered_only_to_staff_who_may_change_the_context(client, workspace, project, superuser):
    from agents.contexts import services as contexts

    context = contexts.context_create(project=project, name="plan", data={"v": 1}, actor=superuser)
    contexts.context_write(context, {"v": 2}, actor=superuser)
    version = context.versions.get(version=1)
    pages = [reverse("admin:agents_agentcontext_change", args=[context.pk]),
             reverse("admin:agents_agentcontextversion_change", args=[version.pk]),
             reverse("admin:agents_agentcontext_diff", args=[context.pk]) + "?from=1&to=2"]
    client.force_login(staff(workspace, "viewer"))
    assert all("Roll back to this version" not in client.get(page).content.decode() for page in pages)
    client.force_login(staff(workspace, "operator"))
    assert all("Roll back to this version" in client.get(page).content.decode() for page in pages)


# --- Search by id prefix. ---


def test_runs_are_found_by_the_id_prefix_the_list_shows(admin_client, project):
    agent = AgentFactory(project=project)
    runs = [AgentRun.objects.create(agent=agent, instruction=f"run {n}") for n in range(3)]
    target = runs[1]
    url = reverse("admin:agents_agentrun_changelist")
    for term in (str(target.pk)[:8], str(target.pk)[:13].upper(), str(target.pk)):
        found = admin_client.get(url, {"q": term}).context["cl"].result_list
        assert [run.pk for run in found] == [target.pk], term
    assert len(admin_client.get(url, {"q": "run"}).context["cl"].result_list) == 3  # words still search
    assert len(admin_client.get(url, {"q": "zz-not-hex"}).context["cl"].result_list) == 0
