"""factory-boy factories for the whole suite.

Agents are always created IDLE through ``agents.services.agent_spawn``; use ``agent_in_status``
to walk one through real transitions to any status.
"""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from knox.models import AuthToken

from agents import services
from agents.choices import AgentStatus
from agents.models import AgentInstance, AgentType
from projects.choices import WorkspaceRole
from projects.models import Issue, Project, Workspace, WorkspaceMembership


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("pw-Syndarix-1")


class WorkspaceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workspace

    name = factory.Sequence(lambda n: f"Workspace {n}")
    slug = factory.Sequence(lambda n: f"workspace-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WorkspaceMembership

    workspace = factory.SubFactory(WorkspaceFactory)
    user = factory.SubFactory(UserFactory)
    role = WorkspaceRole.OPERATOR


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    workspace = factory.SubFactory(WorkspaceFactory)
    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"Project {n}")
    slug = factory.Sequence(lambda n: f"project-{n}")


class AgentTypeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AgentType

    name = factory.Sequence(lambda n: f"Agent type {n}")
    slug = factory.Sequence(lambda n: f"agent-type-{n}")
    description = "An agent type for tests."
    capabilities = factory.LazyFunction(lambda: ["code"])
    config_schema = factory.LazyFunction(
        lambda: {
            "type": "object",
            "properties": {"retries": {"type": "integer", "minimum": 0}, "model": {"type": "string"}},
            "additionalProperties": False,
        }
    )


class AgentFactory(factory.Factory):
    """Builds agents through ``agent_spawn`` (so each has its spawn ledger row)."""

    class Meta:
        model = AgentInstance

    project = factory.SubFactory(ProjectFactory)
    agent_type = factory.SubFactory(AgentTypeFactory)
    name = factory.Sequence(lambda n: f"agent-{n}")
    config = factory.LazyFunction(dict)

    @classmethod
    def _create(cls, model_class, *, project, agent_type, name, config, **kwargs):
        return services.agent_spawn(project=project, agent_type=agent_type, name=name, config=config, **kwargs)


#: A legal path from IDLE to each status.
PATHS = {
    AgentStatus.IDLE: [],
    AgentStatus.WORKING: [AgentStatus.WORKING],
    AgentStatus.WAITING: [AgentStatus.WORKING, AgentStatus.WAITING],
    AgentStatus.PAUSED: [AgentStatus.PAUSED],
    AgentStatus.TERMINATED: [AgentStatus.TERMINATED],
}


def agent_in_status(status: str, **kwargs) -> AgentInstance:
    """Spawn an agent and move it to ``status`` through real transitions.

    The set-up counts as done for its agent class's hooks (``hooks_ran_until`` is its newest ledger row), so
    a test sees only the hooks of the changes it makes.
    """
    agent = AgentFactory(**kwargs)
    for step in PATHS[AgentStatus(status)]:
        agent = services.agent_transition(agent, step)
    newest = agent.transitions.order_by("-created_at").values_list("created_at", flat=True).first()
    AgentInstance.objects.filter(pk=agent.pk).update(hooks_ran_until=newest)
    agent.hooks_ran_until = newest
    return agent


class IssueFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Issue

    project = factory.SubFactory(ProjectFactory)
    title = factory.Sequence(lambda n: f"Issue {n}")


def token_for(user) -> str:
    """A new API token of ``user`` (knox: stored hashed, so only this return value knows it)."""
    return AuthToken.objects.create(user=user)[1]
