"""The agents admin: lifecycle buttons, terminate confirmation, bulk actions, spawn page, index summary.

Everything goes through the Django test client as a logged-in superuser; every state change is
checked in the database and in the ledger (which only the services write).
"""

from __future__ import annotations

from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agents import services
from agents.choices import AgentStatus as S
from agents.models import AgentInstance, AgentTransition, AgentType
from agents.selectors import project_agent_summary
from projects.models import Issue, Project, Workspace, WorkspaceMembership
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

#: Buttons (transition method names) the change form offers in each status.
BUTTONS = {
    S.IDLE: {"start_work", "pause", "terminate"},
    S.WORKING: {"wait", "finish", "pause", "terminate"},
    S.WAITING: {"start_work", "finish", "pause", "terminate"},
    S.PAUSED: {"resume", "terminate"},
    S.TERMINATED: set(),
}
ALL_BUTTONS = {"start_work", "wait", "finish", "pause", "resume", "terminate"}


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def change_url(agent) -> str:
    return reverse("admin:agents_agentinstance_change", args=[agent.pk])


def transition_url(agent) -> str:
    return reverse("admin:agents_agentinstance_transition", args=[agent.pk])


def terminate_url(agent) -> str:
    return reverse("admin:agents_agentinstance_terminate", args=[agent.pk])


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def label(agent) -> str:
    """How the admin's messages name an agent: its name and the first 8 hex digits of its id."""
    return f"“{agent.name} ({str(agent.pk)[:8]})”"


def status_of(agent) -> str:
    return AgentInstance.objects.get(pk=agent.pk).status


def latest_ledger(agent) -> AgentTransition:
    return AgentTransition.objects.filter(agent=agent).order_by("-created_at").first()


def shown_buttons(html: str, agent) -> set[str]:
    """The lifecycle buttons on the page: each submits the change form (``form="agentinstance_form"``)."""
    return {
        name for name in ALL_BUTTONS
        if f'form="agentinstance_form" name="_lifecycle" value="{name}"' in html
    }


class FormFields(HTMLParser):
    """Collect the submittable fields of one ``<form id=...>`` in a page (what a browser would post)."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside, self.data, self._textarea, self._select = form_id, False, {}, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.inside = attrs.get("id") == self.form_id
        elif not self.inside or "name" not in attrs or "disabled" in attrs:
            return
        elif tag == "input" and attrs.get("type") not in ("submit", "checkbox", "button"):
            self.data[attrs["name"]] = attrs.get("value", "")
        elif tag == "input" and attrs.get("type") == "checkbox" and "checked" in attrs:
            self.data[attrs["name"]] = attrs.get("value", "on")
        elif tag == "textarea":
            self._textarea = attrs["name"]
            self.data[self._textarea] = ""
        elif tag == "select":
            self._select = attrs["name"]
        if tag == "option" and self._select and "selected" in attrs:
            self.data[self._select] = attrs.get("value", "")

    def handle_data(self, data):
        if self._textarea:
            self.data[self._textarea] += data

    def handle_endtag(self, tag):
        if tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None
        elif tag == "form":
            self.inside = False


def form_data(html: str, form_id: str = "agentinstance_form") -> dict[str, str]:
    parser = FormFields(form_id)
    parser.feed(html)
    # The browser strips the newline Django puts after <textarea>.
    return {k: v.removeprefix("\n") if isinstance(v, str) else v for k, v in parser.data.items()}


# --- Registration and list pages. ---


@pytest.mark.parametrize(
    "model", [Workspace, WorkspaceMembership, Project, Issue, AgentType, AgentInstance, AgentTransition]
)
def test_every_model_is_registered_with_list_options_and_its_pages_render(admin_client, model):
    agent = AgentFactory()
    IssueFactory(project=agent.project, assigned_agent=agent)
    MembershipFactory(workspace=agent.project.workspace)
    model_admin = admin.site._registry[model]
    assert model_admin.list_display != ("__str__",)
    assert model_admin.list_filter and model_admin.search_fields
    assert hasattr(model_admin, "list_select_related")
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    assert admin_client.get(url).status_code == 200
    assert admin_client.get(url, {"q": "agent"}).status_code == 200
    obj = model.objects.first()
    detail = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[obj.pk])
    assert admin_client.get(detail).status_code == 200


def test_agent_list_query_count_does_not_grow_with_rows(admin_client, project, agent_type):
    url = reverse("admin:agents_agentinstance_changelist")
    agent = AgentFactory(project=project, agent_type=agent_type)
    IssueFactory(project=project, assigned_agent=agent)
    with CaptureQueriesContext(connection) as one:
        assert admin_client.get(url).status_code == 200
    for _ in range(19):
        AgentFactory(project=ProjectFactory(), agent_type=AgentTypeFactory())
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(url)
    assert response.content.decode().count('class="action-select"') == 20
    assert len(many) == len(one)


def test_agent_list_and_form_show_status_badge_counters_and_issue_count(admin_client, project, agent_type):
    agent = agent_in_status(S.WORKING, project=project, agent_type=agent_type, name="Builder")
    services.agent_record_usage(agent, tokens=12_345, cost="1.5", tasks_completed=2)
    IssueFactory.create_batch(3, project=project, assigned_agent=agent)
    html = admin_client.get(reverse("admin:agents_agentinstance_changelist")).content.decode()
    assert 'agent-status-working">Working<' in html
    assert "12,345" in html and "1.5000" in html and "just now" in html
    assert "Spawn agent" in html
    html = admin_client.get(change_url(agent)).content.decode()
    assert f"?assigned_agent__id__exact={agent.pk}\">3<" in html


def test_add_leads_to_the_spawn_page(admin_client, project):
    response = admin_client.get(reverse("admin:agents_agentinstance_add"), {"project": project.pk})
    assert response.status_code == 302
    assert response.url == reverse("admin:agents_agentinstance_spawn") + f"?project={project.pk}"


def test_agents_cannot_be_deleted_in_the_admin(admin_client, agent):
    url = reverse("admin:agents_agentinstance_delete", args=[agent.pk])
    assert admin_client.get(url).status_code == 403
    assert "delete_selected" not in admin_client.get(reverse("admin:agents_agentinstance_changelist")).content.decode()


def test_ledger_admin_is_read_only(admin_client, agent):
    row = latest_ledger(agent)
    assert admin_client.get(reverse("admin:agents_agenttransition_add")).status_code == 403
    html = admin_client.get(reverse("admin:agents_agenttransition_change", args=[row.pk])).content.decode()
    assert 'name="_save"' not in html
    listing = admin_client.get(reverse("admin:agents_agenttransition_changelist"), {"agent": agent.pk})
    assert listing.status_code == 200 and "(spawned)" in listing.content.decode()


# --- Change form: status read-only, one button per available transition. ---


@pytest.mark.parametrize("status", list(BUTTONS))
def test_change_form_shows_one_button_per_available_transition(admin_client, status):
    agent = agent_in_status(status)
    html = admin_client.get(change_url(agent)).content.decode()
    assert shown_buttons(html, agent) == BUTTONS[status]
    assert f'agent-status-{status}"' in html
    assert 'name="status"' not in html  # read-only, never a form field
    assert 'name="tokens_used"' not in html and 'name="tasks_completed"' not in html
    assert ('name="_save"' in html) is (status != S.TERMINATED)


def test_change_form_shows_the_ledger_inline_newest_first(admin_client, agent):
    agent = services.agent_pause(agent, reason="reason-one")
    services.agent_resume(agent, reason="reason-two")
    html = admin_client.get(change_url(agent)).content.decode()
    assert "Transition ledger" in html
    ledger = html[html.index("Transition ledger"):]
    assert ledger.index("reason-two") < ledger.index("reason-one") < ledger.index("spawned")
    assert f'href="{reverse("admin:agents_agenttransition_changelist")}?agent={agent.pk}"' in html


def test_ledger_inline_shows_only_the_latest_rows(admin_client, agent):
    from agents.admin import LEDGER_INLINE_LIMIT

    for _ in range(LEDGER_INLINE_LIMIT // 2 + 1):
        agent = services.agent_pause(agent)
        agent = services.agent_resume(agent)
    html = admin_client.get(change_url(agent)).content.decode()
    assert html.count('<tr class="form-row has_original') == LEDGER_INLINE_LIMIT


SPY_CASES = [
    (S.IDLE, "pause", S.PAUSED, "agent_pause"),
    (S.WORKING, "pause", S.PAUSED, "agent_pause"),
    (S.PAUSED, "resume", S.IDLE, "agent_resume"),
    (S.IDLE, "start_work", S.WORKING, "agent_transition"),
    (S.WAITING, "start_work", S.WORKING, "agent_transition"),
    (S.WORKING, "wait", S.WAITING, "agent_transition"),
    (S.WORKING, "finish", S.IDLE, "agent_transition"),
    (S.WAITING, "finish", S.IDLE, "agent_transition"),
]


@pytest.mark.parametrize(("source", "button", "target", "service"), SPY_CASES)
def test_each_button_performs_its_transition_through_the_service(
    admin_client, superuser, monkeypatch, source, button, target, service
):
    agent = agent_in_status(source)
    calls = []
    real = getattr(services, service)

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(services, service, spy)
    response = admin_client.post(transition_url(agent), {"transition": button})
    assert response.status_code == 302 and response.url == change_url(agent)
    assert len(calls) == 1 and calls[0]["actor"] == superuser
    assert status_of(agent) == target
    row = latest_ledger(agent)
    assert (row.from_status, row.to_status, row.actor) == (source, target, superuser)
    assert any(str(agent) in m for m in messages_of(response))


def test_a_stale_button_is_refused_with_a_message(admin_client):
    agent = agent_in_status(S.PAUSED)
    before = AgentTransition.objects.filter(agent=agent).count()
    response = admin_client.post(transition_url(agent), {"transition": "finish"}, follow=True)
    assert response.status_code == 200
    assert any(
        f"Could not move {label(agent)} to idle" in m and "the agent is 'paused'" in m
        for m in messages_of(response)
    )
    assert status_of(agent) == S.PAUSED
    assert AgentTransition.objects.filter(agent=agent).count() == before


def test_a_repeated_button_is_a_no_op(admin_client):
    agent = agent_in_status(S.PAUSED)
    response = admin_client.post(transition_url(agent), {"transition": "pause"})
    assert messages_of(response) == [f"Agent {label(agent)} is already paused."]


def test_a_button_on_a_terminated_agent_is_a_message_not_an_error_page(admin_client):
    agent = agent_in_status(S.TERMINATED)
    response = admin_client.post(transition_url(agent), {"transition": "resume"})
    assert response.status_code == 302
    assert any("Cannot transition agent from 'terminated' to 'idle'" in m for m in messages_of(response))


def test_transition_url_accepts_post_only_and_known_transitions(admin_client, agent):
    assert admin_client.get(transition_url(agent)).status_code == 405
    response = admin_client.post(transition_url(agent), {"transition": "explode"})
    assert messages_of(response) == ["Unknown transition."]
    assert status_of(agent) == S.IDLE


def test_agents_disabled_is_a_message(admin_client, agent, settings):
    settings.AGENTS_ENABLED = False
    response = admin_client.post(transition_url(agent), {"transition": "pause"})
    assert response.status_code == 302
    assert any("Agents are disabled" in m for m in messages_of(response))
    assert status_of(agent) == S.IDLE


def test_staff_without_change_permission_cannot_transition(client, agent):
    staff = UserFactory(is_staff=True)
    client.force_login(staff)
    assert client.post(transition_url(agent), {"transition": "pause"}).status_code == 403
    assert status_of(agent) == S.IDLE


# --- Terminate confirmation. ---


def test_terminate_button_leads_to_the_confirmation_page(admin_client, agent):
    response = admin_client.post(transition_url(agent), {"transition": "terminate"})
    assert response.status_code == 302 and response.url == terminate_url(agent)
    assert status_of(agent) == S.IDLE


def test_terminate_confirmation_asks_for_a_reason_and_changes_nothing(admin_client, agent):
    response = admin_client.get(terminate_url(agent))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="reason"' in html and 'name="termination_reason"' in html and "Yes, terminate" in html
    assert status_of(agent) == S.IDLE


def test_terminate_without_a_reason_is_refused(admin_client, agent):
    response = admin_client.post(terminate_url(agent), {"reason": "", "termination_reason": "user"})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert status_of(agent) == S.IDLE


def test_confirmed_terminate_goes_through_the_service(admin_client, superuser, monkeypatch):
    agent = agent_in_status(S.WORKING)
    services.agent_update(agent, data={"session_id": "s-9", "current_task": "build"})
    calls = []
    real = services.agent_terminate
    monkeypatch.setattr(services, "agent_terminate", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    response = admin_client.post(terminate_url(agent), {"reason": "over budget", "termination_reason": "budget"})
    assert response.status_code == 302 and response.url == change_url(agent)
    assert calls and calls[0]["termination_reason"] == "budget"
    agent.refresh_from_db()
    assert (agent.status, agent.termination_reason, agent.session_id, agent.current_task) == (
        S.TERMINATED, "budget", "", "",
    )
    row = latest_ledger(agent)
    assert (row.to_status, row.reason, row.actor) == (S.TERMINATED, "over budget", superuser)
    assert messages_of(response) == [f"Agent {label(agent)} has been terminated."]


def test_terminate_page_of_a_terminated_agent_redirects_with_a_message(admin_client):
    agent = agent_in_status(S.TERMINATED)
    response = admin_client.get(terminate_url(agent))
    assert response.status_code == 302 and response.url == change_url(agent)
    assert messages_of(response) == [f"Agent {label(agent)} is already terminated."]


def test_terminate_invalid_termination_reason_is_a_form_error(admin_client, agent):
    response = admin_client.post(terminate_url(agent), {"reason": "x", "termination_reason": "boredom"})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert status_of(agent) == S.IDLE


def test_unknown_agent_redirects_to_the_admin_index_with_a_message(admin_client):
    response = admin_client.get(reverse("admin:agents_agentinstance_terminate", args=["0" * 32]))
    assert response.status_code == 302


# --- Editing through agent_update. ---


def test_change_form_saves_editable_fields_through_agent_update(admin_client, agent, monkeypatch, superuser):
    calls = []
    real = services.agent_update
    monkeypatch.setattr(services, "agent_update", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    data = form_data(admin_client.get(change_url(agent)).content.decode())
    data.update({"name": "renamed", "config": '{"retries": 3}', "status": "terminated", "tokens_used": "999"})
    response = admin_client.post(change_url(agent), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert calls[0]["data"] == {"name": "renamed", "config": {"retries": 3}}
    assert calls[0]["actor"] == superuser
    agent.refresh_from_db()
    assert (agent.name, agent.config, agent.status, agent.tokens_used) == ("renamed", {"retries": 3}, S.IDLE, 0)


def test_change_form_reports_schema_errors_per_field(admin_client, agent):
    data = form_data(admin_client.get(change_url(agent)).content.decode())
    data["config"] = '{"retries": -1, "colour": "red"}'
    response = admin_client.post(change_url(agent), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["config"]
    assert "retries: -1 is less than the minimum of 0" in errors
    assert any("'colour' was unexpected" in e for e in errors)
    agent.refresh_from_db()
    assert agent.config == {}


def test_saving_a_form_loaded_before_many_transitions_still_works(admin_client, agent):
    from agents.admin import LEDGER_INLINE_LIMIT

    data = form_data(admin_client.get(change_url(agent)).content.decode())
    for _ in range(LEDGER_INLINE_LIMIT // 2 + 1):
        agent = services.agent_pause(agent)
        agent = services.agent_resume(agent)
    data["name"] = "after-the-rush"
    response = admin_client.post(change_url(agent), data)
    assert response.status_code == 302
    assert AgentInstance.objects.get(pk=agent.pk).name == "after-the-rush"


def test_terminated_agent_is_view_only(admin_client):
    agent = agent_in_status(S.TERMINATED)
    html = admin_client.get(change_url(agent)).content.decode()
    assert 'name="name"' not in html and "no transition leaves this status" in html
    assert admin_client.post(change_url(agent), {"name": "zombie"}).status_code == 403


# --- Bulk actions. ---


def changelist_action(admin_client, action: str, agents, **extra):
    data = {"action": action, "_selected_action": [str(a.pk) for a in agents], "index": "0", **extra}
    return admin_client.post(reverse("admin:agents_agentinstance_changelist"), data)


def test_bulk_pause_reports_count_already_paused_and_each_failure_by_name(admin_client, project, agent_type):
    kw = {"project": project, "agent_type": agent_type}
    idle, working = agent_in_status(S.IDLE, name="a-idle", **kw), agent_in_status(S.WORKING, name="b-working", **kw)
    paused = agent_in_status(S.PAUSED, name="c-paused", **kw)
    dead1 = agent_in_status(S.TERMINATED, name="d-dead", **kw)
    dead2 = agent_in_status(S.TERMINATED, name="e-dead", **kw)
    response = changelist_action(admin_client, "pause_selected", [idle, working, paused, dead1, dead2])
    assert response.status_code == 302
    msgs = messages_of(response)
    assert "2 agents paused." in msgs
    assert f"1 agent was already paused: {label(paused)}." in msgs
    for dead in (dead1, dead2):
        assert f"Could not move {label(dead)} to paused: Cannot transition agent from 'terminated' to 'paused'. " \
               "Allowed from 'terminated': none." in msgs
    assert [status_of(a) for a in (idle, working, paused, dead1)] == [S.PAUSED, S.PAUSED, S.PAUSED, S.TERMINATED]


def test_bulk_resume_through_the_service(admin_client, superuser, project, agent_type):
    kw = {"project": project, "agent_type": agent_type}
    paused = [agent_in_status(S.PAUSED, name=f"p{i}", **kw) for i in range(3)]
    working = agent_in_status(S.WORKING, name="busy", **kw)
    response = changelist_action(admin_client, "resume_selected", [*paused, working])
    msgs = messages_of(response)
    assert "3 agents resumed." in msgs
    refusal = f"Could not move {label(working)} to idle: Only an agent in 'paused' can do this; the agent is 'working'."
    assert any(m.startswith(refusal) for m in msgs)
    assert all(status_of(a) == S.IDLE for a in paused) and status_of(working) == S.WORKING
    assert all(latest_ledger(a).actor == superuser for a in paused)


def test_bulk_terminate_asks_for_confirmation_first(admin_client, project, agent_type):
    agents = [agent_in_status(S.IDLE, project=project, agent_type=agent_type) for _ in range(2)]
    response = changelist_action(admin_client, "terminate_selected", agents)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Terminate 2 agents?" in html and 'name="reason"' in html
    assert all(status_of(a) == S.IDLE for a in agents)


def test_bulk_terminate_needs_a_reason(admin_client, agent):
    data = {"action": "terminate_selected", "_selected_action": [str(agent.pk)], "post": "yes", "reason": ""}
    response = admin_client.post(reverse("admin:agents_agentinstance_changelist"), data)
    assert response.status_code == 200 and "This field is required." in response.content.decode()
    assert status_of(agent) == S.IDLE


def test_bulk_terminate_confirmed(admin_client, superuser, project, agent_type):
    kw = {"project": project, "agent_type": agent_type}
    live = [agent_in_status(s, **kw) for s in (S.IDLE, S.WORKING, S.PAUSED)]
    dead = agent_in_status(S.TERMINATED, name="gone", **kw)
    data = {
        "action": "terminate_selected", "_selected_action": [str(a.pk) for a in [*live, dead]], "post": "yes",
        "reason": "project cancelled", "termination_reason": "superseded",
    }
    response = admin_client.post(reverse("admin:agents_agentinstance_changelist"), data)
    assert response.status_code == 302
    msgs = messages_of(response)
    assert "3 agents terminated." in msgs
    assert f"Could not move {label(dead)} to terminated: Agent is already terminated." in msgs
    for agent in live:
        agent.refresh_from_db()
        assert (agent.status, agent.termination_reason) == (S.TERMINATED, "superseded")
        assert (latest_ledger(agent).reason, latest_ledger(agent).actor) == ("project cancelled", superuser)


@pytest.mark.parametrize(
    ("field", "text", "message"),
    [
        ("short_term_memory", '{"k": "a\\u0000b"}', "short_term_memory must not contain NUL characters."),
        ("short_term_memory", '{"k": 1e400}', "short_term_memory is not valid JSON"),
        ("config", '{"model": "a\\u0000b"}', "config must not contain NUL characters."),
    ],
)
def test_change_form_refuses_json_postgresql_cannot_store(admin_client, agent, field, text, message):
    data = form_data(admin_client.get(change_url(agent)).content.decode())
    data[field] = text
    response = admin_client.post(change_url(agent), data)
    assert response.status_code == 200
    assert any(message in error for error in response.context["adminform"].form.errors[field])
    agent.refresh_from_db()
    assert (agent.config, agent.short_term_memory) == ({}, {})


# --- Spawn page. ---


def spawn(admin_client, **data):
    return admin_client.post(reverse("admin:agents_agentinstance_spawn"), data)


def test_spawn_page_lists_active_types_and_their_schemas(admin_client, agent_type, project):
    AgentTypeFactory(name="Retired", is_active=False)
    response = admin_client.get(reverse("admin:agents_agentinstance_spawn"), {"project": project.pk})
    assert response.status_code == 200
    html = response.content.decode()
    assert agent_type.name in html and "Retired" not in html
    assert "&quot;minimum&quot;: 0" in html  # the schema, as JSON
    assert response.context["adminform"].form.initial["project"] == str(project.pk)


@pytest.mark.parametrize("value", ["zzz", "123", "", "%00", "00000000-0000-0000-0000-00000000000g"])
def test_spawn_page_ignores_a_project_parameter_that_is_not_a_uuid(admin_client, project, value):
    response = admin_client.get(reverse("admin:agents_agentinstance_spawn"), {"project": value})
    assert response.status_code == 200
    assert response.context["adminform"].form.initial["project"] is None


def test_spawn_page_preselects_a_project_given_by_a_uppercase_uuid(admin_client, project):
    response = admin_client.get(reverse("admin:agents_agentinstance_spawn"), {"project": str(project.pk).upper()})
    assert response.status_code == 200
    assert response.context["adminform"].form.initial["project"] == str(project.pk)
    assert project.name in response.content.decode()


def test_spawn_creates_an_idle_agent_through_the_service(admin_client, superuser, project, agent_type, monkeypatch):
    calls = []
    real = services.agent_spawn
    monkeypatch.setattr(services, "agent_spawn", lambda **kw: calls.append(kw) or real(**kw))
    response = spawn(
        admin_client, project=project.pk, agent_type=agent_type.pk, name="Scout", current_task="look around",
        config='{"retries": 2, "model": "m"}',
    )
    agent = AgentInstance.objects.get(name="Scout")
    assert response.status_code == 302 and response.url == change_url(agent)
    assert calls[0]["actor"] == superuser
    assert (agent.status, agent.project, agent.config, agent.current_task) == (
        S.IDLE, project, {"retries": 2, "model": "m"}, "look around",
    )
    assert latest_ledger(agent).actor == superuser
    assert messages_of(response) == [f"Agent {label(agent)} spawned in {project} (idle)."]


def test_spawn_with_empty_config_uses_an_empty_object(admin_client, project, agent_type):
    spawn(admin_client, project=project.pk, agent_type=agent_type.pk, name="Plain", config="")
    assert AgentInstance.objects.get(name="Plain").config == {}


def test_spawn_shows_each_schema_error_with_its_path(admin_client, project, agent_type):
    response = spawn(
        admin_client, project=project.pk, agent_type=agent_type.pk, name="Bad",
        config='{"retries": -1, "model": 7, "colour": "red"}',
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["config"]
    assert "retries: -1 is less than the minimum of 0" in errors
    assert "model: 7 is not of type 'string'" in errors
    assert any("'colour' was unexpected" in e for e in errors)
    assert "retries: -1 is less than the minimum of 0" in response.content.decode()
    assert not AgentInstance.objects.filter(name="Bad").exists()


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"config": "{not json"}, "config", "Enter a valid JSON."),
        ({"config": "[1, 2]"}, "config", "Must be a JSON object."),
        ({"name": ""}, "name", "This field is required."),
        ({"agent_type": "00000000-0000-0000-0000-000000000000"}, "agent_type", "Select a valid choice."),
    ],
)
def test_spawn_input_errors(admin_client, project, agent_type, data, field, message):
    payload = {"project": project.pk, "agent_type": agent_type.pk, "name": "X", "config": "{}", **data}
    response = spawn(admin_client, **payload)
    assert response.status_code == 200
    assert any(message in e for e in response.context["adminform"].form.errors[field])
    assert AgentInstance.objects.count() == 0


@pytest.mark.parametrize(
    ("config", "message"),
    [('{"model": "a\\u0000b"}', "config must not contain NUL characters."), ('{"retries": 1e400}', "not valid JSON")],
)
def test_spawn_refuses_config_postgresql_cannot_store(admin_client, project, agent_type, config, message):
    response = spawn(admin_client, project=project.pk, agent_type=agent_type.pk, name="X", config=config)
    assert response.status_code == 200
    assert any(message in e for e in response.context["adminform"].form.errors["config"])
    assert not AgentInstance.objects.exists()


@pytest.mark.parametrize(
    ("field", "text", "message"),
    [
        ("config_schema", '{"description": "a\\u0000b"}', "config_schema must not contain NUL characters."),
        ("config_schema", '{"type": "number", "maximum": 1e400}', "config_schema is not valid JSON"),
        ("capabilities", '["a\\u0000b"]', "capabilities must not contain NUL characters."),
    ],
)
def test_agent_type_form_refuses_json_postgresql_cannot_store(admin_client, field, text, message):
    data = _agent_type_form(**{field: text})
    response = admin_client.post(reverse("admin:agents_agenttype_add"), data)
    assert response.status_code == 200
    assert any(message in e for e in response.context["adminform"].form.errors[field])
    assert not AgentType.objects.filter(slug="new").exists()


def _agent_type_form(**values) -> dict:
    return {"name": "New", "slug": "new", "description": "", "is_active": "on", "handler": "",
            "capabilities": "[]", "config_schema": "{}", **values}


def test_agent_type_form_refuses_an_unknown_handler(admin_client):
    response = admin_client.post(reverse("admin:agents_agenttype_add"), _agent_type_form(handler="no-such-class"))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["handler"] == [
        "No agent class is registered as 'no-such-class'. Registered classes: builder, reviewer, tester."
    ]
    assert not AgentType.objects.filter(slug="new").exists()
    response = admin_client.post(reverse("admin:agents_agenttype_add"), _agent_type_form(handler="tester"))
    assert response.status_code == 302
    assert AgentType.objects.get(slug="new").handler == "tester"


def test_agent_type_form_keeps_a_type_whose_class_went_missing_editable(admin_client):
    orphan = AgentTypeFactory(handler="uninstalled", capabilities=[], config_schema={})
    url = reverse("admin:agents_agenttype_change", args=[orphan.pk])
    data = _agent_type_form(name=orphan.name, slug=orphan.slug, handler="uninstalled", description="edited")
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert AgentType.objects.get(pk=orphan.pk).description == "edited"


def test_spawn_refuses_an_inactive_type(admin_client, project):
    inactive = AgentTypeFactory(is_active=False)
    response = spawn(admin_client, project=project.pk, agent_type=inactive.pk, name="X", config="{}")
    assert "Select a valid choice" in str(response.context["adminform"].form.errors["agent_type"])


def test_spawn_domain_errors_become_form_errors(admin_client, project, agent_type):
    Workspace.objects.filter(pk=project.workspace_id).update(max_concurrent_agents=1)
    AgentFactory(project=project, agent_type=agent_type)
    response = spawn(admin_client, project=project.pk, agent_type=agent_type.pk, name="One too many", config="{}")
    assert response.status_code == 200
    errors = str(response.context["adminform"].form.non_field_errors())
    assert "The workspace already has 1 live agent; its limit is 1." in errors
    assert not AgentInstance.objects.filter(name="One too many").exists()


def test_spawn_when_agents_are_disabled(admin_client, project, agent_type, settings):
    settings.AGENTS_ENABLED = False
    response = spawn(admin_client, project=project.pk, agent_type=agent_type.pk, name="X", config="{}")
    assert response.status_code == 200
    assert "Agents are disabled" in response.content.decode()


def test_spawn_needs_add_permission(client, project, agent_type):
    client.force_login(UserFactory(is_staff=True))
    assert client.get(reverse("admin:agents_agentinstance_spawn")).status_code == 403


# --- Index summary. ---


def test_index_shows_agent_counts_tokens_and_cost_per_project(admin_client, workspace, user, agent_type):
    busy = ProjectFactory(workspace=workspace, owner=user, name="Busy")
    ProjectFactory(workspace=workspace, owner=user, name="Empty")
    for status in (S.IDLE, S.IDLE, S.WORKING, S.WAITING, S.PAUSED, S.TERMINATED):
        agent_in_status(status, project=busy, agent_type=agent_type)
    spender = agent_in_status(S.WORKING, project=busy, agent_type=agent_type)
    services.agent_record_usage(spender, tokens=1_500_000, cost="12.25")
    response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 200
    rows = {p.name: p for p in response.context["project_summary"]}
    b = rows["Busy"]
    assert (b.idle_instances, b.active_instances, b.waiting_instances, b.paused_instances,
            b.terminated_instances, b.total_instances) == (2, 2, 1, 1, 1, 7)
    assert (b.total_tokens_used, b.total_cost_incurred) == (1_500_000, Decimal("12.25"))
    assert rows["Empty"].total_instances == 0 and rows["Empty"].total_cost_incurred == 0
    totals = response.context["project_summary_totals"]
    assert totals["total_instances"] == 7 and totals["total_tokens_used"] == 1_500_000
    html = response.content.decode()
    assert "Agents by project" in html and "1,500,000" in html and "12.2500" in html
    assert f"?project__id__exact={busy.pk}&amp;is_playground__exact=0&amp;status__exact=working\">2<" in html


def test_index_summary_is_one_query_for_any_number_of_projects(admin_client, agent_type, django_assert_num_queries):
    for _ in range(5):
        AgentFactory(project=ProjectFactory(), agent_type=agent_type)
    with django_assert_num_queries(1):
        rows = list(project_agent_summary())
    assert len(rows) == 5
    with CaptureQueriesContext(connection) as few:
        admin_client.get(reverse("admin:index"))
    for _ in range(10):
        AgentFactory(project=ProjectFactory(), agent_type=agent_type)
    with CaptureQueriesContext(connection) as many:
        admin_client.get(reverse("admin:index"))
    assert len(many) == len(few)


def test_index_summary_is_hidden_from_staff_who_cannot_view_agents(client):
    client.force_login(UserFactory(is_staff=True))
    response = client.get(reverse("admin:index"))
    assert response.status_code == 200
    assert "project_summary" not in response.context and "Agents by project" not in response.content.decode()


# --- Projects admin. ---


def test_issue_admin_refuses_an_agent_of_another_project(admin_client, agent):
    other = ProjectFactory()
    data = {"project": other.pk, "title": "Wrong agent", "body": "", "status": "open", "assigned_agent": agent.pk}
    response = admin_client.post(reverse("admin:projects_issue_add"), data)
    assert response.status_code == 200
    assert "The agent must belong to the issue" in response.content.decode()
    assert not Issue.objects.filter(title="Wrong agent").exists()


def test_workspace_admin_edits_members_inline(admin_client, workspace, user):
    html = admin_client.get(reverse("admin:projects_workspace_change", args=[workspace.pk])).content.decode()
    assert 'id="memberships-group"' in html


# --- Lifecycle buttons belong to the change form: edits are saved with the transition, never lost. ---


def lifecycle_post(admin_client, agent, button: str, **edits):
    """What the browser posts when a lifecycle button is pressed: the whole change form plus the button."""
    data = {**form_data(admin_client.get(change_url(agent)).content.decode()), **edits, "_lifecycle": button}
    return admin_client.post(change_url(agent), data)


def test_a_lifecycle_button_saves_the_edits_then_transitions(admin_client, superuser, agent):
    response = lifecycle_post(admin_client, agent, "start_work", name="Renamed", current_task="Ship it")
    assert response.status_code == 302 and response.url == change_url(agent)
    agent.refresh_from_db()
    assert (agent.name, agent.current_task, agent.status) == ("Renamed", "Ship it", S.WORKING)
    assert latest_ledger(agent).actor == superuser
    assert messages_of(response) == [
        f"Saved your changes to {label(agent)} (name, current task).", f"Agent {label(agent)} is now working.",
    ]


def test_a_lifecycle_button_with_invalid_edits_does_nothing_and_keeps_them(admin_client, agent):
    response = lifecycle_post(admin_client, agent, "pause", name="", current_task="typed but not saved")
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["name"]
    assert "typed but not saved" in response.content.decode()  # the edits stay on the page
    assert messages_of(response) == [
        f"Nothing was done to {label(agent)}: correct the errors below, then press the button again (your edits are "
        "kept on the page)."
    ]
    agent.refresh_from_db()
    assert (agent.status, agent.current_task) == (S.IDLE, "")


@pytest.mark.parametrize(("button", "page"), [("terminate", "terminate"), ("run", "run")])
def test_terminate_and_run_buttons_save_the_edits_then_open_their_page(admin_client, agent, button, page):
    response = lifecycle_post(admin_client, agent, button, current_task="Saved first")
    assert response.status_code == 302
    assert response.url == reverse(f"admin:agents_agentinstance_{page}", args=[agent.pk])
    agent.refresh_from_db()
    assert (agent.current_task, agent.status) == ("Saved first", S.IDLE)  # terminating still needs confirming


def test_enter_in_a_field_still_means_save(admin_client, agent):
    """The lifecycle buttons precede the form in the page: a hidden Save button comes before them, so it is the
    form's default button (what Enter submits)."""
    html = admin_client.get(change_url(agent)).content.decode()
    default = html.index('form="agentinstance_form" name="_save"')
    assert default < html.index('name="_lifecycle"') < html.index('id="agentinstance_form"')


# --- Only staff who may spawn see "Spawn agent" on the index. ---


@pytest.mark.parametrize(("codenames", "shown"), [
    (["view_agentinstance"], False),
    (["view_agentinstance", "add_agentinstance"], True),
])
def test_the_index_offers_spawning_only_to_staff_who_may_spawn(client, project, codenames, shown):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="agents", codename__in=codenames))
    MembershipFactory(workspace=project.workspace, user=staff, role="operator")
    client.force_login(staff)
    html = client.get(reverse("admin:index")).content.decode()
    assert project.name in html
    assert (reverse("admin:agents_agentinstance_spawn") in html) is shown


def test_the_index_summary_scrolls_instead_of_squeezing_on_narrow_screens(admin_client, project):
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert '<div class="agent-summary-scroll">' in html and html.count('<div class="runtime-scroll">') == 2
    css = (settings.BASE_DIR / "agents/static/agents/admin.css").read_text()
    assert ".agent-summary-scroll { overflow-x: auto; }" in css and ".runtime-scroll { overflow-x: auto; }" in css
    assert "table tbody th, .dashboard .agent-summary table tfoot th { min-width: 10em; }" in css


# --- Agents that share a name are told apart everywhere. ---


def test_agents_sharing_a_name_are_told_apart_in_messages_and_confirmations(admin_client, project, agent_type):
    twins = [AgentFactory(project=project, agent_type=agent_type, name="Browser engineer") for _ in range(2)]
    services.agent_terminate(twins[1], reason="done")
    response = changelist_action(admin_client, "pause_selected", twins)
    assert messages_of(response) == [
        "1 agent paused.",
        f"Could not move {label(twins[1])} to paused: Cannot transition agent from 'terminated' to 'paused'. "
        "Allowed from 'terminated': none.",
    ]
    confirmation = changelist_action(admin_client, "terminate_selected", twins).content.decode()
    assert all(f">{twin.name} ({str(twin.pk)[:8]})</a>" in confirmation for twin in twins)
    single = admin_client.get(terminate_url(twins[0])).content.decode()
    assert f"Terminating <strong>{twins[0].name} ({str(twins[0].pk)[:8]})</strong>" in single
    assert str(twins[0]) != str(twins[1])


# --- The ledger: plain headers, and it says whose it is. ---


def test_the_ledger_names_its_agent_and_has_plain_headers(admin_client, agent):
    url = reverse("admin:agents_agenttransition_changelist")
    response = admin_client.get(url, {"agent": str(agent.pk)})
    html = response.content.decode()
    assert response.context["title"] == f"Transition ledger of agent {label(agent)} in {agent.project.name}"
    headers = [str(h["text"]) for h in response.context["result_headers"]]
    assert headers[:5] == ["When", "Agent", "Project", "From", "To"]
    assert f">{agent.name} ({str(agent.pk)[:8]})</a>" in html
    assert admin_client.get(url).context["title"] == "Select agent transition to view"


def test_the_agent_page_names_the_template_revision_by_its_type(admin_client, project, agent_type):
    services.agent_type_commit_revision(agent_type, template={"llm": {"model": "m"}})
    agent = services.agent_spawn(project=project, agent_type=agent_type, name="Reviser")
    html = admin_client.get(change_url(agent)).content.decode()
    assert f"{agent_type.name} v1" in html and f"{agent_type.pk} v1" not in html


# --- Agent types are saved through their services. ---


def test_agent_type_admin_saves_through_the_services(admin_client, monkeypatch):
    calls = []
    for name in ("agent_type_create", "agent_type_update"):
        real = getattr(services, name)
        monkeypatch.setattr(services, name,
                            lambda *a, _real=real, _name=name, **kw: calls.append(_name) or _real(*a, **kw))
    data = {"name": "Scribe", "slug": "scribe", "description": "", "is_active": "on", "handler": "",
            "capabilities": "[]", "config_schema": "{}", "max_tokens": "", "max_cost_usd": ""}
    response = admin_client.post(reverse("admin:agents_agenttype_add"), data)
    created = AgentType.objects.get(slug="scribe")
    assert response.status_code == 302 and calls == ["agent_type_create"]
    admin_client.post(reverse("admin:agents_agenttype_change", args=[created.pk]), {**data, "name": "Scribe 2"})
    assert calls == ["agent_type_create", "agent_type_update"]
    assert AgentType.objects.get(pk=created.pk).name == "Scribe 2"


def test_a_slug_taken_during_the_save_is_a_form_error(admin_client, monkeypatch):
    """The race the services absorb: the form's own check passed, then a concurrent request took the slug."""
    from syndarix.exceptions import InvalidInput

    def lose_the_race(**fields):
        raise InvalidInput(services.AGENT_TYPE_SLUG_TAKEN, code="unique", field="slug")

    monkeypatch.setattr(services, "agent_type_create", lose_the_race)
    data = {"name": "Scribe", "slug": "scribe", "description": "", "is_active": "on", "handler": "",
            "capabilities": "[]", "config_schema": "{}", "max_tokens": "", "max_cost_usd": ""}
    response = admin_client.post(reverse("admin:agents_agenttype_add"), data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["slug"] == [services.AGENT_TYPE_SLUG_TAKEN]
    assert 'value="Scribe"' in response.content.decode()  # the input is still there
    assert not AgentType.objects.filter(slug="scribe").exists()


def test_the_change_form_asks_before_a_link_discards_edits(admin_client, agent):
    """Links and Back are guarded in the browser (``beforeunload`` once a field was edited; submitting clears it)."""
    html = admin_client.get(change_url(agent)).content.decode()
    assert 'src="/static/agents/unsaved_changes.js"' in html
    script = (settings.BASE_DIR / "agents/static/agents/unsaved_changes.js").read_text()
    assert 'getElementById("agentinstance_form")' in script and '"beforeunload"' in script
    assert 'form.addEventListener("submit", () => { dirty = false; });' in script


def test_the_agent_list_tells_same_named_agents_apart(admin_client, project, agent_type):
    twins = [AgentFactory(project=project, agent_type=agent_type, name="Browser engineer") for _ in range(2)]
    html = admin_client.get(reverse("admin:agents_agentinstance_changelist")).content.decode()
    assert all(f">{twin.name} ({str(twin.pk)[:8]})</a>" in html for twin in twins)
