"""The runtime's admin: the runs list and its bulk cancel, a run's page (trace, cancel, approvals, input), the
agent page's runs and "Run…" form, the index's runs section, the price table, and who may do what.

Runs are created with ``run_create``; nothing executes unless a test runs the on-commit callbacks
(``django_capture_on_commit_callbacks(execute=True)``; Celery runs tasks eagerly in the suite). Runs waiting
for a person are set up directly: ``AgentRunRequest`` rows and ``AgentRun.status``, with the agent walked to
``waiting`` through the lifecycle guard.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from agents.choices import AgentStatus as S
from agents.choices import RunRequestKind, RunRequestStatus, RunStatus, StepKind
from agents.models import AgentInstance, AgentRun, AgentRunRequest
from agents.runtime import services as runtime
from agents.runtime.admin import OFFLINE_NOTE
from agents.runtime.trace import step_record
from aiservices.models import ModelPrice
from tests.factories import (
    AgentFactory,
    AgentTypeFactory,
    IssueFactory,
    MembershipFactory,
    ProjectFactory,
    UserFactory,
    agent_in_status,
)

pytestmark = pytest.mark.django_db

INPUT_SCHEMA = {
    "type": "object",
    "required": ["branch"],
    "properties": {"branch": {"type": "string", "minLength": 1}, "force": {"type": "boolean"}},
    "additionalProperties": False,
}
#: A schema from before the flat-schema rule (a nested property): answered in the JSON box.
JSON_ONLY_SCHEMA = {**INPUT_SCHEMA, "properties": {**INPUT_SCHEMA["properties"], "tags": {"type": "array"}}}


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def builder_type(db):
    """A type backed by the built-in ``builder`` class: its agents run the tool loop over the class's template."""
    return AgentTypeFactory(handler="builder", config_schema={})


@pytest.fixture
def runnable(project, builder_type):
    return AgentFactory(project=project, agent_type=builder_type, name="Builder")


def make_run(agent, instruction="Build the release", **kwargs) -> AgentRun:
    run, created = runtime.run_create(agent=agent, instruction=instruction, **kwargs)
    assert created
    return run


def waiting_run(agent_type, *, kind=RunRequestKind.APPROVAL, **agent_kwargs) -> tuple[AgentRun, AgentRunRequest]:
    """A run of a new agent, ``waiting`` with one pending request of ``kind`` (the agent ``waiting`` too)."""
    agent = agent_in_status(S.WAITING, agent_type=agent_type, **agent_kwargs)
    run = AgentRun.objects.create(agent=agent, instruction="Release 2.0", status=RunStatus.WAITING)
    if kind == RunRequestKind.APPROVAL:
        request = AgentRunRequest.objects.create(
            run=run, kind=kind, tool_name="write_context", arguments={"name": "notes", "data": {"v": 2}}
        )
    else:
        request = AgentRunRequest.objects.create(
            run=run, kind=kind, tool_name="request_input", message="Which branch should I release?",
            requested_schema=INPUT_SCHEMA,
        )
    return run, request


def run_url(run) -> str:
    return reverse("admin:agents_agentrun_change", args=[run.pk])


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def staff_with(*codenames: str, workspace=None, role: str = "operator"):
    """A staff user with the ``agents`` permissions ``codenames``, a member of ``workspace`` (as ``role``) if given."""
    user = UserFactory(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="agents", codename__in=codenames))
    if workspace is not None:
        MembershipFactory(workspace=workspace, user=user, role=role)
    return user


# --- The runs list. ---


def test_runs_list_shows_its_columns_and_is_read_only(admin_client, runnable):
    run = make_run(runnable, issue=IssueFactory(project=runnable.project))
    html = admin_client.get(reverse("admin:agents_agentrun_changelist")).content.decode()
    assert str(run.pk)[:8] in html and "Builder" in html and runnable.project.name in html
    assert 'class="run-status run-status-queued"' in html
    for column in ("Steps", "Tokens", "Cost (USD)", "Attempts", "Created", "Finished"):
        assert column in html
    assert "cancel_selected" in html and "delete_selected" not in html
    assert admin_client.get(reverse("admin:agents_agentrun_add")).status_code == 403
    assert admin_client.post(run_url(run), {"status": "succeeded"}).status_code == 405
    assert AgentRun.objects.get(pk=run.pk).status == RunStatus.QUEUED


def test_runs_list_filters_and_search(admin_client, runnable, builder_type):
    mine = make_run(runnable, instruction="Tag release 2.0")
    other = make_run(AgentFactory(agent_type=builder_type, name="Elsewhere"), instruction="Write notes")
    url = reverse("admin:agents_agentrun_changelist")
    year = timezone.localtime(mine.created_at).year
    cases = [
        ({"status__exact": "queued"}, {mine, other}),
        ({"status__exact": "waiting"}, set()),
        ({"agent__project__workspace__id__exact": runnable.project.workspace_id}, {mine}),
        ({"agent__project__id__exact": other.agent.project_id}, {other}),
        ({"created_at__year": year}, {mine, other}),
        ({"q": "Elsewhere"}, {other}),
        ({"q": "release 2.0"}, {mine}),
        ({"agent__id__exact": runnable.pk}, {mine}),
    ]
    for params, expected in cases:
        response = admin_client.get(url, params)
        assert response.status_code == 200, params
        assert set(response.context["cl"].result_list) == expected, params


def test_runs_list_query_count_does_not_grow_with_rows(admin_client, runnable, builder_type, django_assert_num_queries):
    url = reverse("admin:agents_agentrun_changelist")
    run = make_run(runnable)
    AgentRunRequest.objects.create(run=run, kind=RunRequestKind.APPROVAL, tool_name="write_context")
    with CaptureQueriesContext(connection) as one:
        assert admin_client.get(url).status_code == 200
    for n in range(9):
        agent = AgentFactory(agent_type=builder_type, project=ProjectFactory())
        extra = make_run(agent, issue=IssueFactory(project=agent.project))
        AgentRunRequest.objects.create(run=extra, kind=RunRequestKind.INPUT, tool_name=f"request_input_{n}")
    with django_assert_num_queries(len(one)):
        response = admin_client.get(url)
    assert response.content.decode().count('class="action-select"') == 10


def test_bulk_cancel_reports_each_outcome(admin_client, runnable, builder_type):
    first, second = make_run(runnable), make_run(runnable, instruction="Then this")
    done = make_run(AgentFactory(agent_type=builder_type, name="Finisher"))
    AgentRun.objects.filter(pk=done.pk).update(status=RunStatus.SUCCEEDED, finished_at=timezone.now())
    gone = make_run(AgentFactory(agent_type=builder_type, name="Gone"))
    runtime.run_cancel(gone)
    selection = {"action": "cancel_selected", "_selected_action": [first.pk, second.pk, done.pk, gone.pk]}
    confirm = admin_client.post(reverse("admin:agents_agentrun_changelist"), selection)
    assert confirm.status_code == 200 and "Cancel 4 runs?" in confirm.content.decode()
    assert "2 of them have ended already" in confirm.content.decode()
    assert AgentRun.objects.get(pk=first.pk).status == RunStatus.QUEUED  # nothing happens before the confirmation
    response = admin_client.post(reverse("admin:agents_agentrun_changelist"), {**selection, "post": "yes"}, follow=True)
    notes = messages_of(response)
    assert "2 runs cancelled." in notes
    assert f"1 run was already cancelled: {str(gone.pk)[:8]}." in notes
    assert f"Could not cancel run {str(done.pk)[:8]} of “{done.agent}”: The run already succeeded." in notes
    statuses = dict(AgentRun.objects.values_list("pk", "status"))
    assert statuses[first.pk] == statuses[second.pk] == RunStatus.CANCELLED
    assert statuses[done.pk] == RunStatus.SUCCEEDED
    assert AgentRun.objects.get(pk=first.pk).error_message == "Cancelled by root."


# --- A run's page. ---


def test_run_page_shows_summary_and_the_whole_trace(admin_client, runnable, settings):
    settings.AGENT_LLM_PROVIDER = "openai"
    issue = IssueFactory(project=runnable.project, title="Release checklist")
    run = make_run(runnable, issue=issue, instruction="Ship <it>")
    step_record(
        run.pk, kind=StepKind.LLM_CALL, name="gpt-4o-mini", input={"messages": [{"role": "user", "content": "hi"}]},
        output={"content": "calling a tool"}, prompt_tokens=1200, completion_tokens=34, cost=Decimal("0.000201"),
        duration_ms=850, agent_id=runnable.pk,
    )
    step_record(
        run.pk, kind=StepKind.TOOL_CALL, name="query_issues", input={"status": "open"},
        error={"code": "not_found", "message": "No such project."}, duration_ms=12,
    )
    AgentRun.objects.filter(pk=run.pk).update(
        status=RunStatus.FAILED, error_code="upstream_error", error_message="The model said no.",
        result={"message": "partial"}, worker="celery@box", attempts=2, finished_at=timezone.now(),
    )
    response = admin_client.get(run_url(run))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Ship &lt;it&gt;" in html and "Release checklist" in html and "celery@box" in html
    assert "upstream_error" in html and "The model said no." in html
    assert "&quot;message&quot;: &quot;partial&quot;" in html
    assert "1,234 tokens" in html and "0.0002 USD" in html
    assert 'id="step-0"' in html and 'id="step-1"' in html and "Trace (2 steps)" in html
    assert "gpt-4o-mini" in html and "1,200" in html and "850" in html and "0.000201" in html
    assert "not_found" in html and "No such project." in html
    assert html.count('<details class="run-json"><summary>Input</summary>') == 2
    assert "&quot;role&quot;: &quot;user&quot;" in html  # pretty-printed, escaped
    assert "Cancel run" not in html and "Finished runs are final." in html
    assert OFFLINE_NOTE not in html


def test_run_pages_say_when_the_offline_provider_answers(admin_client, runnable, settings):
    settings.AGENT_LLM_PROVIDER = "offline"
    run = make_run(runnable)
    for url in (run_url(run), reverse("admin:agents_agentrun_changelist"),
                reverse("admin:agents_agentinstance_run", args=[runnable.pk])):
        assert OFFLINE_NOTE in admin_client.get(url).content.decode(), url
    assert OFFLINE_NOTE == "Offline provider: no LLM is configured, answers are scripted (set AGENT_LLM_API_URL)"


def test_cancel_button_asks_for_confirmation_then_cancels_the_run(admin_client, runnable):
    run = make_run(runnable)
    html = admin_client.get(run_url(run)).content.decode()
    cancel = reverse("admin:agents_agentrun_cancel", args=[run.pk])
    assert f'href="{cancel}"' in html  # a link to the confirmation, not a button that cancels at once
    confirm = admin_client.get(cancel)
    assert confirm.status_code == 200 and "Yes, cancel the run" in confirm.content.decode()
    assert AgentRun.objects.get(pk=run.pk).status == RunStatus.QUEUED
    assert admin_client.put(cancel).status_code == 405
    response = admin_client.post(cancel, follow=True)
    assert f"Run {str(run.pk)[:8]} cancelled." in messages_of(response)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.error_code == "cancelled"
    assert f'href="{cancel}"' not in response.content.decode()
    finished = admin_client.get(cancel, follow=True)
    assert "finished runs are final" in messages_of(finished)[-1]
    again = admin_client.post(cancel, follow=True)
    assert f"Run {str(run.pk)[:8]} was already cancelled." in messages_of(again)


def test_cancel_of_a_finished_run_is_an_error_message(admin_client, runnable):
    run = make_run(runnable)
    AgentRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
    response = admin_client.post(reverse("admin:agents_agentrun_cancel", args=[run.pk]), follow=True)
    assert response.status_code == 200
    assert f"Could not cancel run {str(run.pk)[:8]}: The run already succeeded." in messages_of(response)


def test_cancel_of_a_waiting_run_frees_its_agent(admin_client, builder_type):
    run, request = waiting_run(builder_type)
    admin_client.post(reverse("admin:agents_agentrun_cancel", args=[run.pk]))
    request.refresh_from_db()
    assert request.status == RunRequestStatus.CANCELLED
    assert AgentInstance.objects.get(pk=run.agent_id).status == S.IDLE


def test_approve_then_deciding_again_is_an_error_not_a_500(admin_client, builder_type, superuser):
    run, request = waiting_run(builder_type)
    html = admin_client.get(run_url(run)).content.decode()
    decide = reverse("admin:agents_agentrun_decide", args=[run.pk, request.pk])
    assert "Waiting for you" in html and f'action="{decide}"' in html
    assert 'value="approve"' in html and 'value="deny"' in html and "&quot;notes&quot;" in html
    response = admin_client.post(decide, {"decision": "approve", "reason": "Looks right"}, follow=True)
    assert response.status_code == 200
    assert "Approved: “write_context”. The run continues on a worker." in messages_of(response)
    request.refresh_from_db()
    assert (request.status, request.reason, request.decided_by) == (RunRequestStatus.APPROVED, "Looks right", superuser)
    assert run.steps.get().kind == StepKind.APPROVAL
    html = response.content.decode()
    assert f'action="{decide}"' not in html and "Requests answered" in html and "Looks right" in html
    again = admin_client.post(decide, {"decision": "deny"}, follow=True)
    assert again.status_code == 200
    assert "Could not deny “write_context”: This request is already approved." in messages_of(again)
    assert AgentRunRequest.objects.get(pk=request.pk).status == RunRequestStatus.APPROVED


def test_deny_with_a_reason(admin_client, builder_type):
    run, request = waiting_run(builder_type)
    decide = reverse("admin:agents_agentrun_decide", args=[run.pk, request.pk])
    admin_client.post(decide, {"decision": "deny", "reason": "Not on a Friday"})
    request.refresh_from_db()
    assert (request.status, request.reason) == (RunRequestStatus.DENIED, "Not on a Friday")
    bogus = admin_client.post(decide, {"decision": "maybe"}, follow=True)
    assert any(m.startswith("Could not decide: ") for m in messages_of(bogus))


def test_decide_refuses_a_request_of_another_run(admin_client, builder_type):
    run, _ = waiting_run(builder_type)
    _, foreign = waiting_run(builder_type)
    url = reverse("admin:agents_agentrun_decide", args=[run.pk, foreign.pk])
    response = admin_client.post(url, {"decision": "approve"}, follow=True)
    assert "This run has no such approval request." in messages_of(response)
    assert AgentRunRequest.objects.get(pk=foreign.pk).status == RunRequestStatus.PENDING


def test_a_schema_outside_mcp_elicitation_is_offered_only_a_decline(admin_client, builder_type):
    """A request stored before requestedSchemas had to be MCP elicitation schemas cannot be answered (the service
    refuses to check an answer against it, 409 ``unsupported_schema``): the page says why and offers Decline only."""
    run, request = waiting_run(builder_type, kind=RunRequestKind.INPUT)
    AgentRunRequest.objects.filter(pk=request.pk).update(requested_schema=JSON_ONLY_SCHEMA)
    answer = reverse("admin:agents_agentrun_answer", args=[run.pk])
    html = admin_client.get(run_url(run)).content.decode()
    assert "Which branch should I release?" in html and f'action="{answer}"' in html and "&quot;tags&quot;" in html
    assert "is not an MCP elicitation schema" in html
    assert "<li>Property &#x27;tags&#x27;: &#x27;type&#x27; must be" in html
    assert 'value="decline"' in html and 'value="accept"' not in html and "Answer (JSON)" not in html

    sent = admin_client.post(answer, {"action": "accept", "content": json.dumps({"branch": "main"})})
    assert sent.status_code == 200  # the page again, with the service's reason
    assert "no answer can be checked against it" in sent.content.decode()
    assert AgentRunRequest.objects.get(pk=request.pk).status == RunRequestStatus.PENDING

    done = admin_client.post(answer, {"action": "decline"}, follow=True)
    assert "Declined: “request_input”. The run continues on a worker." in messages_of(done)
    request.refresh_from_db()
    assert request.status == RunRequestStatus.DECLINED and request.response == {"action": "decline"}


def test_input_can_be_declined_whatever_is_in_the_form(admin_client, builder_type):
    run, request = waiting_run(builder_type, kind=RunRequestKind.INPUT)
    answer = reverse("admin:agents_agentrun_answer", args=[run.pk])
    admin_client.post(answer, {"action": "decline", "content-branch": ""})
    request.refresh_from_db()
    assert request.status == RunRequestStatus.DECLINED and request.response == {"action": "decline"}


def test_a_connection_request_is_answered_against_the_connection_schema(admin_client, builder_type):
    run, request = waiting_run(builder_type, kind=RunRequestKind.INPUT)
    AgentRunRequest.objects.filter(pk=request.pk).update(
        kind=RunRequestKind.CONNECTION, tool_name="request_connection", requested_schema=None,
        arguments={"integration": "github"},
    )
    answer = reverse("admin:agents_agentrun_answer", args=[run.pk])
    html = admin_client.get(run_url(run)).content.decode()
    assert 'name="content-connected"' in html and 'type="checkbox"' in html and "&quot;connected&quot;" in html
    wrong = admin_client.post(answer, {"action": "accept", "content-connection": "x" * 201})
    assert wrong.context["pending_rows"][0]["form"].errors["connection"]
    admin_client.post(answer, {"action": "accept", "content-connected": "on", "content-connection": "gh"})
    request = AgentRunRequest.objects.get(pk=request.pk)
    assert request.status == RunRequestStatus.ANSWERED
    assert request.response == {"action": "accept", "content": {"connected": True, "connection": "gh"}}


def test_a_run_reaches_an_approval_and_succeeds_once_approved(
    admin_client, runnable, django_capture_on_commit_callbacks, settings
):
    """End to end with the offline provider: the builder's write tool waits for approval; approving it in the
    admin lets the run finish (tasks run eagerly in the suite)."""
    settings.DEBUG, settings.AGENT_LLM_PROVIDER = True, "offline"  # the offline provider is a debug-only stand-in
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:agents_agentinstance_run", args=[runnable.pk]),
            {"instruction": "Prepare release notes", "request_id": "k-1"},
        )
    run = AgentRun.objects.get(agent=runnable)
    assert response.status_code == 302 and response["Location"] == run_url(run)
    run.refresh_from_db()
    assert run.status == RunStatus.WAITING, (run.error_code, run.error_message)
    request = run.requests.get(status=RunRequestStatus.PENDING)
    html = admin_client.get(run_url(run)).content.decode()
    assert request.tool_name in html and "LLM call" in html
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert run_url(run) in index and request.tool_name in index
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse("admin:agents_agentrun_decide", args=[run.pk, request.pk]), {"decision": "approve"})
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, (run.error_code, run.error_message)
    assert AgentInstance.objects.get(pk=runnable.pk).status == S.IDLE
    html = admin_client.get(run_url(run)).content.decode()
    assert "Approval" in html and "Cancel run" not in html


# --- The agent's page: runs inline and "Run…". ---


def test_agent_page_lists_its_latest_runs_and_offers_run(admin_client, runnable):
    runs = [make_run(runnable, instruction=f"Task {n}\nmore detail") for n in range(22)]
    html = admin_client.get(reverse("admin:agents_agentinstance_change", args=[runnable.pk])).content.decode()
    assert "Runs (latest 20, newest first)" in html
    assert run_url(runs[-1]) in html and run_url(runs[1]) not in html  # newest 20 only
    assert "Task 21" in html and "more detail" not in html
    assert 'name="_lifecycle" value="run"' in html and "Run…" in html  # saves the page's edits, then the Run page
    assert f"?agent__id__exact={runnable.pk}" in html
    assert 'name="runs-0-instruction"' not in html  # read-only rows


def test_agent_page_has_no_run_button_for_a_terminated_agent(admin_client, builder_type):
    agent = agent_in_status(S.TERMINATED, agent_type=builder_type)
    html = admin_client.get(reverse("admin:agents_agentinstance_change", args=[agent.pk])).content.decode()
    assert reverse("admin:agents_agentinstance_run", args=[agent.pk]) not in html


def test_run_form_queues_a_run_once_and_goes_to_its_page(admin_client, runnable, superuser):
    url = reverse("admin:agents_agentinstance_run", args=[runnable.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    key = page.context["adminform"].form["request_id"].value()
    assert key.startswith("admin-")
    issue = IssueFactory(project=runnable.project, title="Cut the release")
    data = {"instruction": "Build 2.0", "issue": issue.pk, "request_id": key}
    response = admin_client.post(url, data, follow=True)
    run = AgentRun.objects.get(agent=runnable)
    assert response.redirect_chain[-1][0] == run_url(run)
    assert (run.instruction, run.issue, run.requested_by, run.status) == (
        "Build 2.0", issue, superuser, RunStatus.QUEUED)
    assert f"Run {str(run.pk)[:8]} of “Builder ({str(runnable.pk)[:8]})” queued; it starts when the agent is idle." \
        in messages_of(response)
    replay = admin_client.post(url, data, follow=True)
    assert AgentRun.objects.filter(agent=runnable).count() == 1
    assert f"Run {str(run.pk)[:8]} was already queued by this form." in messages_of(replay)


def test_run_form_offers_only_issues_of_the_agents_project(admin_client, runnable):
    url = reverse("admin:agents_agentinstance_run", args=[runnable.pk])
    mine = IssueFactory(project=runnable.project)
    foreign = IssueFactory()
    choices = list(admin_client.get(url).context["adminform"].form.fields["issue"].queryset)
    assert choices == [mine]
    response = admin_client.post(url, {"instruction": "", "issue": foreign.pk, "request_id": "k"})
    assert response.status_code == 200
    assert "Select a valid choice" in str(response.context["adminform"].form.errors["issue"])
    empty = admin_client.post(url, {"instruction": "  ", "request_id": "k"})
    assert "Write an instruction, choose an issue, or both." in str(empty.context["adminform"].form.non_field_errors())
    assert not AgentRun.objects.exists()


def test_run_form_shows_not_runnable(admin_client, agent):
    response = admin_client.post(
        reverse("admin:agents_agentinstance_run", args=[agent.pk]), {"instruction": "Go", "request_id": "k"}
    )
    assert response.status_code == 200
    errors = str(response.context["adminform"].form.non_field_errors())
    assert "has no agent class and the agent no template" in errors
    assert not AgentRun.objects.exists()


def test_run_form_shows_agent_terminated(admin_client, builder_type):
    agent = agent_in_status(S.TERMINATED, agent_type=builder_type)
    response = admin_client.post(
        reverse("admin:agents_agentinstance_run", args=[agent.pk]), {"instruction": "Go", "request_id": "k"}
    )
    assert response.status_code == 200
    assert "Cannot run a terminated agent." in str(response.context["adminform"].form.non_field_errors())
    assert not AgentRun.objects.exists()


def test_run_form_when_agents_are_disabled(admin_client, runnable, settings):
    settings.AGENTS_ENABLED = False
    response = admin_client.post(
        reverse("admin:agents_agentinstance_run", args=[runnable.pk]), {"instruction": "Go", "request_id": "k"}
    )
    assert "Agents are disabled" in str(response.context["adminform"].form.non_field_errors())


# --- Budgets. ---


def test_agent_budget_is_edited_through_agent_update(admin_client, runnable, superuser):
    url = reverse("admin:agents_agentinstance_change", args=[runnable.pk])
    html = admin_client.get(url).content.decode()
    assert 'name="max_tokens"' in html and 'name="max_cost_usd"' in html and "Budget in force" in html
    data = {"name": "Builder", "current_task": "", "config": "{}", "short_term_memory": json.dumps(
        runnable.short_term_memory), "long_term_memory_ref": "", "session_id": "", "max_tokens": "5000",
        "max_cost_usd": "1.50"}
    inline = {"runs-TOTAL_FORMS": "0", "runs-INITIAL_FORMS": "0", "transitions-TOTAL_FORMS": "0",
              "transitions-INITIAL_FORMS": "0"}
    response = admin_client.post(url, {**data, **inline})
    assert response.status_code == 302, response.context["adminform"].form.errors
    agent = AgentInstance.objects.get(pk=runnable.pk)
    assert (agent.max_tokens, agent.max_cost_usd) == (5000, Decimal("1.5"))
    negative = admin_client.post(url, {**data, **inline, "max_cost_usd": "-1"})
    assert negative.status_code == 200 and "Must be zero or more." in negative.content.decode()


def test_agent_type_admin_edits_budget_defaults(admin_client, builder_type):
    html = admin_client.get(reverse("admin:agents_agenttype_change", args=[builder_type.pk])).content.decode()
    assert 'name="max_tokens"' in html and 'name="max_cost_usd"' in html


# --- The index. ---


def test_index_shows_run_counts_waiting_requests_and_stale_heartbeats(admin_client, builder_type, runnable):
    make_run(runnable)
    waiting, request = waiting_run(builder_type, name="Asker")
    stale_agent = agent_in_status(S.WORKING, agent_type=builder_type, name="Silent")
    stale_run = AgentRun.objects.create(agent=stale_agent, instruction="x", status=RunStatus.RUNNING)
    AgentInstance.objects.filter(pk=stale_agent.pk).update(last_heartbeat_at=timezone.now() - timedelta(hours=2))
    fresh_agent = agent_in_status(S.WORKING, agent_type=builder_type, name="Beating")
    AgentRun.objects.create(agent=fresh_agent, instruction="y", status=RunStatus.RUNNING)
    AgentInstance.objects.filter(pk=fresh_agent.pk).update(last_heartbeat_at=timezone.now())

    response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 200
    section = response.context["runtime"]
    assert {c["status"]: c["count"] for c in section["counts"]} == {
        "queued": 1, "running": 2, "waiting": 1, "paused": 0}
    assert [w["request"] for w in section["waiting"]] == [request]
    assert [s["agent"] for s in section["stale"]] == [stale_agent]
    html = response.content.decode()
    assert "Waiting for you" in html and "Asker" in html and "write_context" in html
    assert "&quot;name&quot;: &quot;notes&quot;" in html and "&quot;data&quot;: {&quot;v&quot;: 2}" in html
    assert f'href="{run_url(waiting)}#run-pending"' in html
    assert "Stale heartbeats" in html and "Silent" in html and "2\xa0hours ago" in html and run_url(stale_run) in html
    assert "Beating" not in html
    assert html.index('id="runtime-dashboard"') < html.index('id="agent-summary"')  # runs first, then agents
    assert f"{reverse('admin:agents_agentrun_changelist')}?status__exact=waiting" in html


def test_index_runs_section_is_a_fixed_number_of_queries(admin_client, builder_type):
    url = reverse("admin:index")

    def stale_run(**kwargs):
        agent = agent_in_status(S.WORKING, agent_type=builder_type, **kwargs)
        AgentRun.objects.create(agent=agent, instruction="x", status=RunStatus.RUNNING)

    waiting_run(builder_type)
    stale_run()
    with CaptureQueriesContext(connection) as few:
        admin_client.get(url)
    for _ in range(4):
        waiting_run(builder_type, project=ProjectFactory())
        stale_run(project=ProjectFactory())
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(url)
    assert len(response.context["runtime"]["waiting"]) == 5 and len(response.context["runtime"]["stale"]) == 5
    assert len(many) == len(few)


def test_index_sections_follow_permissions(client):
    viewer = staff_with("view_agentinstance")
    client.force_login(viewer)
    response = client.get(reverse("admin:index"))
    assert "project_summary" in response.context and "runtime" not in response.context
    client.force_login(staff_with("view_agentrun"))
    response = client.get(reverse("admin:index"))
    assert "runtime" in response.context and "project_summary" not in response.context


# --- Permissions. ---


def test_staff_without_the_view_permission_get_403(client, runnable):
    run = make_run(runnable)
    client.force_login(staff_with("view_agentinstance", workspace=runnable.project.workspace))
    for url in (reverse("admin:agents_agentrun_changelist"), run_url(run)):
        assert client.get(url).status_code == 403, url
    assert client.post(reverse("admin:agents_agentrun_cancel", args=[run.pk])).status_code == 403
    assert client.get(reverse("admin:agents_agentinstance_run", args=[runnable.pk])).status_code == 403
    html = client.get(reverse("admin:agents_agentinstance_change", args=[runnable.pk])).content.decode()
    assert "Runs (latest" not in html and "Run…" not in html


def test_viewers_see_runs_but_cannot_cancel_or_answer(client, builder_type):
    run, request = waiting_run(builder_type)
    client.force_login(staff_with("view_agentrun", workspace=run.agent.project.workspace))
    html = client.get(run_url(run)).content.decode()
    assert "Waiting for you" in html and "Cancel run" not in html and 'value="approve"' not in html
    assert "Your account lacks the “Can change agent run” permission." in html
    assert client.post(reverse("admin:agents_agentrun_cancel", args=[run.pk])).status_code == 403
    decide = reverse("admin:agents_agentrun_decide", args=[run.pk, request.pk])
    assert client.post(decide, {"decision": "approve"}).status_code == 403
    assert client.post(reverse("admin:agents_agentrun_answer", args=[run.pk]), {"action": "decline"}).status_code == 403
    listing = client.get(reverse("admin:agents_agentrun_changelist")).content.decode()
    assert "cancel_selected" not in listing
    assert AgentRun.objects.get(pk=run.pk).status == RunStatus.WAITING


def test_operators_with_the_change_permission_can_decide(client, builder_type):
    run, request = waiting_run(builder_type)
    client.force_login(staff_with("view_agentrun", "change_agentrun", workspace=run.agent.project.workspace))
    client.post(reverse("admin:agents_agentrun_decide", args=[run.pk, request.pk]), {"decision": "deny"})
    assert AgentRunRequest.objects.get(pk=request.pk).status == RunRequestStatus.DENIED


def test_non_staff_are_sent_to_the_login_page(client, runnable):
    run = make_run(runnable)
    client.force_login(UserFactory(is_staff=False))
    for url in (reverse("admin:agents_agentrun_changelist"), run_url(run),
                reverse("admin:agents_agentinstance_run", args=[runnable.pk])):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login")), url
    response = client.post(reverse("admin:agents_agentrun_cancel", args=[run.pk]))
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    assert AgentRun.objects.get(pk=run.pk).status == RunStatus.QUEUED


# --- The price table. ---


def test_model_prices_are_listed_searched_and_edited(admin_client):
    price = ModelPrice.objects.create(model="gpt-4o-mini", input_usd_per_mtok="0.15", output_usd_per_mtok="0.60")
    ModelPrice.objects.create(model="claude-sonnet", input_usd_per_mtok="3", output_usd_per_mtok="15")
    url = reverse("admin:aiservices_modelprice_changelist")
    response = admin_client.get(url, {"q": "gpt"})
    assert list(response.context["cl"].result_list) == [price]
    html = response.content.decode()
    assert "0.150000" in html and "0.600000" in html and "claude-sonnet" not in html
    change = reverse("admin:aiservices_modelprice_change", args=[price.pk])
    response = admin_client.post(change, {"model": "gpt-4o-mini", "input_usd_per_mtok": "0.2",
                                           "output_usd_per_mtok": "0.8"})
    assert response.status_code == 302
    price.refresh_from_db()
    assert (price.input_usd_per_mtok, price.output_usd_per_mtok) == (Decimal("0.2"), Decimal("0.8"))
    bad = admin_client.post(change, {"model": "gpt-4o-mini", "input_usd_per_mtok": "-1", "output_usd_per_mtok": "1"})
    assert bad.status_code == 200


def test_run_page_shows_a_run_waiting_out_an_llm_outage(admin_client, runnable):
    run = make_run(runnable)
    now = timezone.now()
    AgentRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, retry_at=now + timedelta(seconds=30), retry_since=now - timedelta(seconds=60),
        retry_count=3, retry_error="The AI service failed (HTTP 503).",
    )
    page = admin_client.get(run_url(run)).content.decode()
    assert "Upstream outage" in page and "3 attempts failed since" in page
    assert "The AI service failed (HTTP 503)." in page
    AgentRun.objects.filter(pk=run.pk).update(retry_at=None)
    assert "Upstream outage" not in admin_client.get(run_url(run)).content.decode()
