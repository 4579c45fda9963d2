"""Workspace and project services: create and update (slug uniqueness), guarded deletes."""

from __future__ import annotations

import pytest

from agents.contexts import services as contexts
from agents.models import AgentContext, AgentInstance, AgentTransition
from projects import services
from projects.models import Issue, Project, Workspace, WorkspaceMembership
from syndarix.exceptions import DomainError, InvalidInput, NotFound
from tests.factories import (
    AgentFactory,
    IssueFactory,
    MembershipFactory,
    ProjectFactory,
    UserFactory,
    WorkspaceFactory,
    agent_in_status,
)

pytestmark = pytest.mark.django_db


# --- workspaces ---


def test_workspace_create():
    workspace = services.workspace_create(name="Acme", slug="acme", max_concurrent_agents=3)
    assert Workspace.objects.get(slug="acme") == workspace
    assert (workspace.name, workspace.max_concurrent_agents, workspace.agent_limit) == ("Acme", 3, 3)


def test_workspace_create_with_a_taken_slug_is_unique_on_slug():
    WorkspaceFactory(slug="acme")
    with pytest.raises(InvalidInput) as info:
        services.workspace_create(name="Other", slug="acme")
    assert (info.value.code, info.value.field, info.value.status_code) == ("unique", "slug", 400)
    assert Workspace.objects.filter(slug="acme").count() == 1


def test_workspace_update_writes_only_its_fields(workspace):
    before = workspace.updated_at
    updated = services.workspace_update(workspace, data={"name": "Renamed", "max_concurrent_agents": 7, "id": "x"})
    saved = Workspace.objects.get(pk=workspace.pk)
    assert (saved.name, saved.max_concurrent_agents, saved.slug) == ("Renamed", 7, workspace.slug)
    assert updated is workspace and saved.updated_at > before


def test_workspace_update_to_a_taken_slug_is_unique_on_slug(workspace):
    WorkspaceFactory(slug="taken")
    with pytest.raises(InvalidInput) as info:
        services.workspace_update(workspace, data={"slug": "taken"})
    assert (info.value.code, info.value.field) == ("unique", "slug")
    assert Workspace.objects.get(pk=workspace.pk).slug != "taken"


def test_workspace_update_with_nothing_to_change_writes_nothing(workspace, django_assert_num_queries):
    with django_assert_num_queries(0):
        services.workspace_update(workspace, data={"unknown": 1})


def test_an_empty_workspace_is_deleted_with_its_memberships(workspace):
    MembershipFactory(workspace=workspace)
    services.workspace_delete(workspace=workspace)
    assert not Workspace.objects.filter(pk=workspace.pk).exists()
    assert not WorkspaceMembership.objects.filter(workspace_id=workspace.pk).exists()


def test_a_workspace_with_projects_is_not_deleted(workspace):
    ProjectFactory(workspace=workspace)
    ProjectFactory(workspace=workspace)
    with pytest.raises(DomainError) as info:
        services.workspace_delete(workspace=workspace)
    assert (info.value.code, info.value.status_code, info.value.extra) == ("workspace_not_empty", 409, {"projects": 2})
    assert Workspace.objects.filter(pk=workspace.pk).exists()


def test_deleting_a_workspace_that_is_already_gone_is_not_found(workspace):
    stale = Workspace.objects.get(pk=workspace.pk)
    services.workspace_delete(workspace=workspace)
    with pytest.raises(NotFound):
        services.workspace_delete(workspace=stale)


# --- projects ---


def test_project_create(workspace, user):
    project = services.project_create(workspace=workspace, owner=user, name="Apollo", slug="apollo",
                                      description="To the moon.")
    saved = Project.objects.get(pk=project.pk)
    assert (saved.workspace, saved.owner, saved.name, saved.slug, saved.description) == (
        workspace, user, "Apollo", "apollo", "To the moon.")


def test_project_slugs_are_unique_per_workspace(workspace, user):
    ProjectFactory(workspace=workspace, slug="apollo")
    services.project_create(workspace=WorkspaceFactory(), owner=user, name="Apollo", slug="apollo")  # elsewhere: fine
    with pytest.raises(InvalidInput) as info:
        services.project_create(workspace=workspace, owner=user, name="Apollo", slug="apollo")
    assert (info.value.code, info.value.field, info.value.message) == (
        "unique", "slug", "This workspace already has a project with this slug.")
    assert Project.objects.filter(slug="apollo").count() == 2


def test_project_update_changes_name_slug_description_only(project):
    other = WorkspaceFactory()
    services.project_update(project, data={"name": "N", "slug": "n", "description": "d", "workspace": other,
                                           "owner": UserFactory()})
    saved = Project.objects.get(pk=project.pk)
    assert (saved.name, saved.slug, saved.description) == ("N", "n", "d")
    assert (saved.workspace_id, saved.owner_id) == (project.workspace_id, project.owner_id)


def test_project_update_to_a_slug_taken_in_its_workspace_is_unique_on_slug(project):
    ProjectFactory(workspace=project.workspace, slug="taken")
    with pytest.raises(InvalidInput) as info:
        services.project_update(project, data={"slug": "taken"})
    assert (info.value.code, info.value.field) == ("unique", "slug")
    assert Project.objects.get(pk=project.pk).slug != "taken"


def test_project_delete_refuses_while_agents_live(project, agent_type):
    AgentFactory(project=project, agent_type=agent_type)
    agent_in_status("paused", project=project, agent_type=agent_type)
    agent_in_status("terminated", project=project, agent_type=agent_type)
    with pytest.raises(DomainError) as info:
        services.project_delete(project=project)
    assert (info.value.code, info.value.extra) == ("project_has_live_agents", {"live_agents": 2})
    assert Project.objects.filter(pk=project.pk).exists()
    assert AgentInstance.objects.filter(project=project).count() == 3


def test_project_delete_removes_issues_terminated_agents_their_ledger_and_contexts(project, agent_type):
    gone = agent_in_status("terminated", project=project, agent_type=agent_type)
    IssueFactory(project=project, assigned_agent=gone)
    contexts.context_create(project=project, name="notes", data={"k": 1})
    keep = ProjectFactory(workspace=project.workspace)
    survivor = AgentFactory(project=keep, agent_type=agent_type)
    services.project_delete(project=project)
    assert not Project.objects.filter(pk=project.pk).exists()
    assert not Issue.objects.filter(project_id=project.pk).exists()
    assert not AgentInstance.objects.filter(pk=gone.pk).exists()
    assert not AgentTransition.objects.filter(agent_id=gone.pk).exists()
    assert not AgentContext.objects.filter(project_id=project.pk).exists()
    assert AgentInstance.objects.filter(pk=survivor.pk).exists()  # another project's agents are untouched
    assert Workspace.objects.filter(pk=project.workspace_id).exists()


def test_deleting_a_project_that_is_already_gone_is_not_found(project):
    stale = Project.objects.get(pk=project.pk)
    services.project_delete(project=project)
    with pytest.raises(NotFound):
        services.project_delete(project=stale)
