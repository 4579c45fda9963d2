"""Tenancy in the admin (``projects.admin.WorkspaceScopedAdminMixin``): staff who are not superusers see and act only
in the workspaces they are members of, and change things only where their role writes; superusers see everything.

Two staff users with every model permission, each an operator of a different workspace: every page, lookup and
action for the other tenant's objects answers as for an object that does not exist, and changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from agents.choices import AgentStatus as S
from agents.choices import RunRequestKind, RunRequestStatus, RunStatus
from agents.contexts import services as contexts
from agents.models import AgentContext, AgentInstance, AgentRun, AgentRunRequest, AgentTransition
from projects.models import Issue, Project, Workspace, WorkspaceMembership
from tests.factories import (
    AgentFactory,
    AgentTypeFactory,
    IssueFactory,
    MembershipFactory,
    ProjectFactory,
    UserFactory,
    WorkspaceFactory,
)

pytestmark = pytest.mark.django_db


@dataclass
class Tenant:
    """One workspace with one of everything, and its operator (a staff user with every permission)."""

    workspace: Workspace
    project: Project
    issue: Issue
    agent: AgentInstance
    context: AgentContext
    run: AgentRun
    request: AgentRunRequest
    membership: WorkspaceMembership
    staff: object

    def client(self) -> Client:
        client = Client()
        client.force_login(self.staff)
        return client


def every_permission(user) -> None:
    apps = ("projects", "agents", "buildkit", "aiservices")
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=apps))


def make_tenant(label: str, agent_type, *, role: str = "operator") -> Tenant:
    workspace = WorkspaceFactory(name=f"Workspace {label}", slug=f"ws-{label}")
    staff = UserFactory(username=f"staff-{label}", is_staff=True)
    every_permission(staff)
    membership = MembershipFactory(workspace=workspace, user=staff, role=role)
    project = ProjectFactory(workspace=workspace, name=f"Project {label}", slug=f"project-{label}")
    agent = AgentFactory(project=project, agent_type=agent_type, name=f"Agent {label}")
    context = contexts.context_create(project=project, name=f"notes-{label}", data={"v": 1})
    contexts.context_write(context, {"v": 2})
    run = AgentRun.objects.create(agent=agent, instruction=f"Run {label}", status=RunStatus.WAITING)
    request = AgentRunRequest.objects.create(run=run, kind=RunRequestKind.APPROVAL, tool_name="write_context",
                                             arguments={"name": "notes"})
    return Tenant(workspace, project, IssueFactory(project=project, title=f"Issue {label}"), agent, context, run,
                  request, membership, staff)


@pytest.fixture
def agent_type(db):
    return AgentTypeFactory(name="Worker", slug="worker", config_schema={})


@pytest.fixture
def ours(agent_type) -> Tenant:
    return make_tenant("ours", agent_type)


@pytest.fixture
def theirs(agent_type) -> Tenant:
    return make_tenant("theirs", agent_type)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def change_urls(t: Tenant) -> list[str]:
    """Every object page of tenant ``t``: change, history and delete pages and the custom views."""
    objects = [
        ("projects", "workspace", t.workspace), ("projects", "workspacemembership", t.membership),
        ("projects", "project", t.project), ("projects", "issue", t.issue),
        ("agents", "agentinstance", t.agent), ("agents", "agentcontext", t.context),
        ("agents", "agentcontextversion", t.context.versions.get(version=1)), ("agents", "agentrun", t.run),
        ("agents", "agenttransition", AgentTransition.objects.filter(agent=t.agent).first()),
    ]
    urls = []
    for app, model, obj in objects:
        urls += [reverse(f"admin:{app}_{model}_change", args=[obj.pk]),
                 reverse(f"admin:{app}_{model}_history", args=[obj.pk])]
        if model in ("workspacemembership", "project", "issue", "agentcontext"):  # workspaces: superusers only
            urls.append(reverse(f"admin:{app}_{model}_delete", args=[obj.pk]))
    return urls + [
        reverse("admin:agents_agentinstance_terminate", args=[t.agent.pk]),
        reverse("admin:agents_agentinstance_run", args=[t.agent.pk]),
        reverse("admin:agents_agentcontext_diff", args=[t.context.pk]),
        reverse("admin:agents_agentcontext_rollback", args=[t.context.pk, 1]),
    ]


def assert_does_not_exist(response, url: str) -> None:
    """The admin's answer for a missing object: back to the index with "… doesn't exist"."""
    assert response.status_code == 302 and response.url == reverse("admin:index"), url
    assert any("doesn’t exist" in m for m in messages_of(response)), url


# --- Lists, pages, the index. ---

LISTS = [
    ("projects_workspace_changelist", lambda t: t.workspace.name),
    ("projects_workspacemembership_changelist", lambda t: t.workspace.name),
    ("projects_project_changelist", lambda t: t.project.name),
    ("projects_issue_changelist", lambda t: t.issue.title),
    ("agents_agentinstance_changelist", lambda t: t.agent.name),
    ("agents_agenttransition_changelist", lambda t: t.agent.name),
    ("agents_agentcontext_changelist", lambda t: t.context.name),
    ("agents_agentcontextversion_changelist", lambda t: t.context.name),
    ("agents_agentrun_changelist", lambda t: t.agent.name),
]


@pytest.mark.parametrize(("url_name", "shown"), LISTS, ids=[name for name, _ in LISTS])
def test_lists_show_only_the_staff_members_workspaces(ours, theirs, url_name, shown):
    html = ours.client().get(reverse(f"admin:{url_name}")).content.decode()
    assert shown(ours) in html
    assert shown(theirs) not in html and theirs.workspace.name not in html  # the filters list only our values too
    superuser = Client()
    superuser.force_login(UserFactory(is_superuser=True, is_staff=True))
    everything = superuser.get(reverse(f"admin:{url_name}")).content.decode()
    assert shown(ours) in everything and shown(theirs) in everything


def test_the_other_tenants_pages_do_not_exist(ours, theirs):
    client = ours.client()
    for url in change_urls(theirs):
        assert_does_not_exist(client.get(url), url)
    for url in change_urls(ours):  # our own pages are there (removing a member takes the workspace admin role)
        expected = 403 if url.startswith(reverse("admin:projects_workspacemembership_changelist")) and \
            url.endswith("/delete/") else 200
        assert client.get(url).status_code == expected, url


def test_the_index_counts_only_the_staff_members_workspaces(ours, theirs):
    response = ours.client().get(reverse("admin:index"))
    assert [row.name for row in response.context["project_summary"]] == [ours.project.name]
    runtime = response.context["runtime"]
    assert {c["status"]: c["count"] for c in runtime["counts"]}[RunStatus.WAITING] == 1
    assert [row["request"] for row in runtime["waiting"]] == [ours.request]
    assert theirs.project.name not in response.content.decode()


def test_agent_type_counts_cover_only_the_staff_members_workspaces(ours, theirs, agent_type):
    response = ours.client().get(reverse("admin:agents_agenttype_changelist"))
    row = response.context["cl"].result_list[0]
    assert (row.total_agent_count, row.live_agent_count) == (1, 1)


# --- Writes, buttons and actions on the other tenant's objects change nothing. ---


def test_buttons_and_posts_on_the_other_tenants_objects_change_nothing(ours, theirs):
    client = ours.client()
    posts = [
        (reverse("admin:agents_agentinstance_transition", args=[theirs.agent.pk]), {"transition": "pause"}),
        (reverse("admin:agents_agentinstance_change", args=[theirs.agent.pk]),
         {"name": "hijacked", "_lifecycle": "pause"}),
        (reverse("admin:agents_agentinstance_terminate", args=[theirs.agent.pk]),
         {"reason": "x", "termination_reason": "user"}),
        (reverse("admin:agents_agentinstance_run", args=[theirs.agent.pk]), {"instruction": "go", "request_id": "k"}),
        (reverse("admin:agents_agentcontext_rollback", args=[theirs.context.pk, 1]), {}),
        (reverse("admin:agents_agentcontext_pin", args=[theirs.context.pk, 1]), {}),
        (reverse("admin:agents_agentrun_cancel", args=[theirs.run.pk]), {}),
        (reverse("admin:agents_agentrun_decide", args=[theirs.run.pk, theirs.request.pk]), {"decision": "approve"}),
        (reverse("admin:agents_agentrun_answer", args=[theirs.run.pk]), {"action": "decline"}),
        (reverse("admin:projects_project_change", args=[theirs.project.pk]), {"name": "hijacked", "slug": "h"}),
    ]
    for url, data in posts:
        assert_does_not_exist(client.post(url, data), url)
    theirs.agent.refresh_from_db()
    assert (theirs.agent.status, theirs.agent.name) == (S.IDLE, "Agent theirs")
    assert not AgentRun.objects.filter(agent=theirs.agent).exclude(pk=theirs.run.pk).exists()
    assert AgentRun.objects.get(pk=theirs.run.pk).status == RunStatus.WAITING
    assert AgentRunRequest.objects.get(pk=theirs.request.pk).status == RunRequestStatus.PENDING
    assert theirs.context.versions.count() == 2 and not theirs.context.versions.filter(pinned=True).exists()
    assert Project.objects.get(pk=theirs.project.pk).name == "Project theirs"


def test_bulk_actions_never_reach_the_other_tenants_rows(ours, theirs):
    client = ours.client()
    agents = reverse("admin:agents_agentinstance_changelist")
    client.post(agents, {"action": "pause_selected", "_selected_action": [str(ours.agent.pk), str(theirs.agent.pk)]})
    assert AgentInstance.objects.get(pk=ours.agent.pk).status == S.PAUSED
    assert AgentInstance.objects.get(pk=theirs.agent.pk).status == S.IDLE
    client.post(reverse("admin:agents_agentrun_changelist"),
                {"action": "cancel_selected", "_selected_action": [str(theirs.run.pk)]})
    assert AgentRun.objects.get(pk=theirs.run.pk).status == RunStatus.WAITING
    client.post(reverse("admin:projects_issue_changelist"),
                {"action": "delete_selected", "_selected_action": [str(theirs.issue.pk)], "post": "yes"})
    assert Issue.objects.filter(pk=theirs.issue.pk).exists()


# --- Choices, autocomplete and raw-id lookups offer only the staff member's rows. ---


def autocomplete(client, app_label: str, model_name: str, field_name: str) -> list[str]:
    url = reverse("admin:autocomplete")
    query = {"app_label": app_label, "model_name": model_name, "field_name": field_name, "term": ""}
    return [row["text"] for row in json.loads(client.get(url, query).content)["results"]]


def test_autocomplete_lists_only_the_staff_members_rows(ours, theirs):
    client = ours.client()
    assert autocomplete(client, "projects", "issue", "project") == [ours.project.name]
    assert autocomplete(client, "projects", "issue", "assigned_agent") == [str(ours.agent)]
    assert autocomplete(client, "projects", "project", "workspace") == [ours.workspace.name]
    popup = client.get(reverse("admin:agents_agentinstance_changelist"), {"_to_field": "id", "_popup": "1"})
    assert ours.agent.name in popup.content.decode() and theirs.agent.name not in popup.content.decode()


def test_forms_refuse_the_other_tenants_rows(ours, theirs):
    client = ours.client()
    issue = client.post(reverse("admin:projects_issue_add"),
                        {"project": theirs.project.pk, "title": "Sneaky", "status": "open"})
    assert "Select a valid choice" in str(issue.context["adminform"].form.errors["project"])
    context = client.post(reverse("admin:agents_agentcontext_add"),
                          {"project": ours.project.pk, "instance": theirs.agent.pk, "name": "x", "data": "{}"})
    assert "Select a valid choice" in str(context.context["adminform"].form.errors["instance"])
    spawn = client.post(reverse("admin:agents_agentinstance_spawn"),
                        {"project": theirs.project.pk, "agent_type": theirs.agent.agent_type_id, "name": "x",
                         "config": "{}"})
    assert "Select a valid choice" in str(spawn.context["adminform"].form.errors["project"])
    assert not Issue.objects.filter(title="Sneaky").exists()
    assert not AgentInstance.objects.filter(name="x").exists()


def test_the_playground_runs_only_in_the_staff_members_projects(ours, theirs, agent_type):
    client = ours.client()
    url = reverse("admin:buildkit_agenttemplate_playground", args=[agent_type.pk])
    page = client.get(url)
    assert list(page.context["form"].fields["project"].queryset) == [ours.project]
    draft = json.dumps({"llm": {"model": "m"}})
    response = client.post(url, {"draft": draft, "project": str(theirs.project.pk), "action": "run",
                                 "instruction": "Go"})
    assert "Select a valid choice" in str(response.context["form"].errors["project"])
    assert not AgentInstance.objects.filter(is_playground=True).exists()


# --- A read-only role: sees its workspace, changes nothing in it. ---


@pytest.fixture
def viewer(ours):
    """Staff with every permission whose role in ``ours``'s workspace is viewer."""
    user = UserFactory(username="viewer", is_staff=True)
    every_permission(user)
    MembershipFactory(workspace=ours.workspace, user=user, role="viewer")
    client = Client()
    client.force_login(user)
    return client


def test_a_viewer_sees_the_workspace_read_only(ours, viewer):
    page = viewer.get(reverse("admin:agents_agentinstance_change", args=[ours.agent.pk])).content.decode()
    assert ours.agent.name in page
    assert 'name="_save"' not in page and 'name="_lifecycle"' not in page
    assert viewer.post(reverse("admin:agents_agentinstance_transition", args=[ours.agent.pk]),
                       {"transition": "pause"}).status_code == 403
    assert viewer.post(reverse("admin:agents_agentinstance_change", args=[ours.agent.pk]),
                       {"name": "renamed"}).status_code == 403
    assert viewer.post(reverse("admin:agents_agentrun_cancel", args=[ours.run.pk])).status_code == 403
    assert viewer.post(reverse("admin:agents_agentcontext_pin", args=[ours.context.pk, 1])).status_code == 403
    # Bulk actions are not offered to a viewer (only refused), and one posted anyway does nothing.
    listing = viewer.get(reverse("admin:agents_agentinstance_changelist")).content.decode()
    assert "pause_selected" not in listing and 'name="action"' not in listing
    viewer.post(reverse("admin:agents_agentinstance_changelist"),
                {"action": "pause_selected", "_selected_action": [str(ours.agent.pk)]})
    assert AgentInstance.objects.get(pk=ours.agent.pk).status == S.IDLE
    assert viewer.get(reverse("admin:agents_agentinstance_run", args=[ours.agent.pk])).status_code == 403


def test_staff_without_a_membership_see_nothing_and_are_told_why(ours, agent_type):
    nomad = UserFactory(username="nomad", is_staff=True)
    every_permission(nomad)
    client = Client()
    client.force_login(nomad)
    index = client.get(reverse("admin:index")).content.decode()
    assert "No projects in your workspaces" in index and ours.project.name not in index
    playground = client.get(reverse("admin:buildkit_agenttemplate_playground", args=[agent_type.pk]))
    assert "you are not one in any workspace" in playground.content.decode()
    assert list(playground.context["form"].fields["project"].queryset) == []


def test_only_superusers_add_or_delete_workspaces(ours):
    client = ours.client()
    assert client.get(reverse("admin:projects_workspace_add")).status_code == 403
    assert client.post(reverse("admin:projects_workspace_delete", args=[ours.workspace.pk]),
                       {"post": "yes"}).status_code == 403
    assert Workspace.objects.filter(pk=ours.workspace.pk).exists()


def test_scoping_adds_no_query_per_row(ours, agent_type):
    """The membership test is a subquery: a scoped list costs the same number of queries for 1 row as for 10."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = ours.client()
    url = reverse("admin:agents_agentinstance_changelist")
    with CaptureQueriesContext(connection) as one:
        client.get(url)
    for n in range(9):
        AgentFactory(project=ours.project, agent_type=agent_type, name=f"More {n}")
    with CaptureQueriesContext(connection) as ten:
        html = client.get(url).content.decode()
    assert "More 8" in html
    assert len(ten.captured_queries) == len(one.captured_queries)
