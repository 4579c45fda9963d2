"""Tenancy on the models: who sees and who writes a project; a workspace's agent limit."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError

from projects.choices import WorkspaceRole
from projects.models import Issue, Project
from tests.factories import AgentFactory, MembershipFactory, ProjectFactory, UserFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenancy(workspace, project, user):
    """``project`` (owned by ``user``) and a second project in ``workspace``, plus a project elsewhere."""
    sibling = ProjectFactory(workspace=workspace)
    elsewhere = ProjectFactory()
    return {"project": project, "sibling": sibling, "elsewhere": elsewhere}


def ids(queryset) -> set:
    return set(queryset.values_list("pk", flat=True))


def test_owner_sees_and_writes_their_own_project_only(tenancy, user):
    project = tenancy["project"]
    assert ids(Project.objects.visible_to(user)) == {project.pk}
    assert ids(Project.objects.writable_by(user)) == {project.pk}
    assert project.can_write(user) and not tenancy["sibling"].can_write(user)


@pytest.mark.parametrize("role", list(WorkspaceRole))
def test_members_see_every_project_of_their_workspace_and_write_by_role(tenancy, workspace, role):
    member = MembershipFactory(workspace=workspace, role=role).user
    in_workspace = {tenancy["project"].pk, tenancy["sibling"].pk}
    assert ids(Project.objects.visible_to(member)) == in_workspace
    writes = role in (WorkspaceRole.ADMIN, WorkspaceRole.OPERATOR)
    assert ids(Project.objects.writable_by(member)) == (in_workspace if writes else set())
    assert tenancy["project"].can_write(member) is writes
    assert tenancy["elsewhere"].can_write(member) is False


def test_superusers_see_and_write_everything(tenancy):
    root = UserFactory(is_superuser=True)
    everything = {p.pk for p in tenancy.values()}
    assert ids(Project.objects.visible_to(root)) == everything
    assert ids(Project.objects.writable_by(root)) == everything
    assert all(p.can_write(root) for p in tenancy.values())


def test_strangers_and_anonymous_users_see_nothing(tenancy):
    stranger = UserFactory()
    for who in (stranger, AnonymousUser(), None):
        assert ids(Project.objects.visible_to(who)) == set()
        assert ids(Project.objects.writable_by(who)) == set()
        assert tenancy["project"].can_write(who) is False


def test_an_owner_who_is_also_a_member_of_several_workspaces_sees_each_project_once(tenancy, workspace, user):
    MembershipFactory(workspace=workspace, user=user, role=WorkspaceRole.VIEWER)
    other = WorkspaceFactory()
    MembershipFactory(workspace=other, user=user, role=WorkspaceRole.ADMIN)
    third = ProjectFactory(workspace=other)
    visible = list(Project.objects.visible_to(user).values_list("pk", flat=True))
    assert sorted(visible) == sorted({tenancy["project"].pk, tenancy["sibling"].pk, third.pk})
    writable = list(Project.objects.writable_by(user).values_list("pk", flat=True))
    assert sorted(writable) == sorted({tenancy["project"].pk, third.pk})  # a viewer writes only what they own


def test_agent_limit_falls_back_to_the_setting(settings):
    settings.AGENT_MAX_CONCURRENCY = 12
    assert WorkspaceFactory(max_concurrent_agents=None).agent_limit == 12
    assert WorkspaceFactory(max_concurrent_agents=3).agent_limit == 3
    assert WorkspaceFactory(max_concurrent_agents=0).agent_limit == 0  # zero allows no live agent


def test_string_forms(workspace, project, user):
    membership = MembershipFactory(workspace=workspace, user=UserFactory(username="ada"), role=WorkspaceRole.ADMIN)
    assert str(workspace) == workspace.name and str(project) == project.name
    assert str(membership) == f"ada @ {workspace.name} (admin)"


def test_an_issue_may_only_be_assigned_to_an_agent_of_its_project(project):
    agent = AgentFactory()
    with pytest.raises(ValidationError) as info:
        Issue(project=project, title="t", assigned_agent=agent).full_clean()
    assert "assigned_agent" in info.value.message_dict
    Issue(project=agent.project, title="t", assigned_agent=agent).full_clean()
