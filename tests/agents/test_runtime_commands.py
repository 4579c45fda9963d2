"""``run_agent`` and ``cancel_run``."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from agents import services
from agents.choices import RunStatus
from agents.models import AgentRun
from agents.runtime import services as runtime
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def looper(project, user):
    agent_type = factories.AgentTypeFactory()
    services.agent_type_commit_revision(agent_type, template={"llm": {"model": "m"}}, author=user)
    return services.agent_spawn(project=project, agent_type=agent_type, name="looper")


def run(*args, **options) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def test_run_agent_queues_a_run(looper, user):
    out = run("run_agent", str(looper.pk), instruction="sum it up", actor=user.username)
    created = AgentRun.objects.get()
    assert f"Queued: run {created.pk} of 'looper'." in out
    assert (created.instruction, created.requested_by, created.status) == ("sum it up", user, RunStatus.QUEUED)


def test_run_agent_on_an_issue_and_with_an_idempotency_key(looper):
    issue = factories.IssueFactory(project=looper.project)
    run("run_agent", str(looper.pk), issue=str(issue.pk), idempotency_key="k")
    again = run("run_agent", str(looper.pk), issue=str(issue.pk), idempotency_key="k")
    assert "Already queued" in again and AgentRun.objects.get().issue == issue
    with pytest.raises(CommandError, match="No issue"):
        run("run_agent", str(looper.pk), issue=str(factories.IssueFactory().pk))


def test_run_agent_refusals_are_command_errors(looper, agent):
    with pytest.raises(CommandError, match="Send an instruction"):
        run("run_agent", str(looper.pk))
    with pytest.raises(CommandError, match="no agent class and the agent no template"):
        run("run_agent", str(agent.pk), instruction="x")
    services.agent_terminate(looper)
    with pytest.raises(CommandError, match="terminated"):
        run("run_agent", str(looper.pk), instruction="x")
    assert not AgentRun.objects.exists()


def test_run_agent_dry_run_changes_nothing(looper):
    assert "nothing was changed" in run("run_agent", str(looper.pk), instruction="x", dry_run=True)
    assert not AgentRun.objects.exists()


def test_run_agent_wait_follows_the_run_until_it_settles(looper, monkeypatch):
    """--wait follows the run's events; here the run is finished by the time it looks."""

    def create_and_finish(**kwargs):
        created, fresh = runtime.run_create(**kwargs)
        AgentRun.objects.filter(pk=created.pk).update(status=RunStatus.SUCCEEDED, result={"message": "all good"})
        return created, fresh

    monkeypatch.setattr("agents.management.commands.run_agent.run_create", create_and_finish)
    out = run("run_agent", str(looper.pk), instruction="x", wait=True)
    assert "succeeded: 0 steps, 0 tokens" in out and "all good" in out


def test_run_agent_wait_reports_a_failure_and_a_timeout(looper, monkeypatch):
    def create_and_fail(**kwargs):
        created, fresh = runtime.run_create(**kwargs)
        AgentRun.objects.filter(pk=created.pk).update(status=RunStatus.FAILED, error_code="upstream_timeout",
                                                      error_message="slow")
        return created, fresh

    monkeypatch.setattr("agents.management.commands.run_agent.run_create", create_and_fail)
    with pytest.raises(CommandError, match="upstream_timeout: slow"):
        run("run_agent", str(looper.pk), instruction="x", wait=True)
    monkeypatch.undo()
    with pytest.raises(CommandError, match="still queued after 0.3 s"):
        run("run_agent", str(looper.pk), instruction="y", wait=True, timeout=0.3)


def test_cancel_run(looper):
    queued = runtime.run_create(agent=looper, instruction="x")[0]
    assert f"Cancelled run {queued.pk}" in run("cancel_run", str(queued.pk))
    assert AgentRun.objects.get(pk=queued.pk).status == RunStatus.CANCELLED
    assert "already cancelled" in run("cancel_run", str(queued.pk))


def test_cancel_run_refusals(looper):
    done = runtime.run_create(agent=looper, instruction="x")[0]
    AgentRun.objects.filter(pk=done.pk).update(status=RunStatus.SUCCEEDED)
    with pytest.raises(CommandError, match="already succeeded"):
        run("cancel_run", str(done.pk))
    with pytest.raises(CommandError, match="No run with id nope"):
        run("cancel_run", "nope")
    queued = runtime.run_create(agent=looper, instruction="y")[0]
    with pytest.raises(CommandError, match="2 run"):
        run("cancel_run", str(queued.pk), str(done.pk), "nope")  # the good one is cancelled, the others reported
    assert AgentRun.objects.get(pk=queued.pk).status == RunStatus.CANCELLED


def test_cancel_run_dry_run(looper):
    queued = runtime.run_create(agent=looper, instruction="x")[0]
    assert "Would have cancelled" in run("cancel_run", str(queued.pk), dry_run=True)
    assert AgentRun.objects.get(pk=queued.pk).status == RunStatus.QUEUED
