"""Management commands: seed_demo, spawn_agent, pause/resume/terminate_agent, agent_metrics."""

from __future__ import annotations

import json
import stat
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError
from knox.models import AuthToken

from agents.choices import AgentStatus as S
from agents.management.commands.seed_demo import read_credentials
from agents.models import AgentInstance, AgentTransition, AgentType
from agents.registry import registry
from projects.models import Issue, Project, Workspace, WorkspaceMembership
from projects.selectors import auth_token_owner
from tests.factories import AgentFactory, AgentTypeFactory, ProjectFactory, UserFactory, agent_in_status

pytestmark = pytest.mark.django_db

ENV = ("SYNDARIX_DEMO_ADMIN_PASSWORD", "SYNDARIX_DEMO_OPERATOR_PASSWORD")


def run(*args, **options) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def status_of(agent) -> str:
    return AgentInstance.objects.get(pk=agent.pk).status


# --- seed_demo ---


@pytest.fixture
def credentials(tmp_path, monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return tmp_path / ".demo-credentials"


def counts() -> dict[str, int]:
    models = [
        get_user_model(), Workspace, WorkspaceMembership, Project, AgentType, AgentInstance, AgentTransition, Issue,
        AuthToken,
    ]
    return {m.__name__: m.objects.count() for m in models}


def test_seed_demo_creates_the_demo_world(credentials):
    out = run("seed_demo", credentials_file=str(credentials))
    assert "Demo data created" in out
    assert Workspace.objects.get(slug="demo")
    demo_types = {"product-owner", "architect", "engineer", "qa"}
    builtin_types = {"reviewer", "builder", "tester"}
    assert set(AgentType.objects.values_list("slug", flat=True)) == demo_types | builtin_types
    for agent_type in AgentType.objects.filter(slug__in=demo_types):
        assert agent_type.config_schema["properties"]
        assert agent_type.revisions.count() == 1
    # No demo or built-in agent pins a vendor model: each follows AGENT_LLM_MODEL, the model the server serves.
    for agent_type in AgentType.objects.all():
        assert "model" not in (agent_type.revisions.get().template.get("llm") or {}), agent_type.slug
    assert not [a.name for a in AgentInstance.objects.all() if "model" in a.config]
    agents = AgentInstance.objects.all()
    assert agents.count() == 15
    by_status = {s: agents.filter(status=s).count() for s in S.values}
    # working and waiting belong to a run a worker executes or a person answers: nothing backs a seeded one
    assert by_status == {S.IDLE: 7, S.WORKING: 0, S.WAITING: 0, S.PAUSED: 6, S.TERMINATED: 2}, by_status
    assert sum(a.tokens_used for a in agents) > 0 and sum(a.cost_incurred for a in agents) > Decimal("0")
    assert Issue.objects.filter(assigned_agent__isnull=False).count() >= 8
    for issue in Issue.objects.filter(assigned_agent__isnull=False):
        assert issue.assigned_agent.project_id == issue.project_id
    for agent in agents:
        agent.agent_type.validate_config(agent.config)


def test_seed_demo_walks_agents_through_real_transitions(credentials):
    run("seed_demo", credentials_file=str(credentials))
    for agent in AgentInstance.objects.all():
        ledger = list(agent.transitions.order_by("created_at"))
        assert ledger[0].from_status == "" and ledger[0].to_status == S.IDLE
        for previous, row in zip(ledger, ledger[1:], strict=False):
            assert row.from_status == previous.to_status
        assert ledger[-1].to_status == agent.status
    terminated = AgentInstance.objects.filter(status=S.TERMINATED)
    assert {a.termination_reason for a in terminated} == {"superseded", "budget"}
    assert all(a.terminated_at for a in terminated)


def test_seed_demo_users_credentials_and_token(credentials):
    out = run("seed_demo", credentials_file=str(credentials))
    User = get_user_model()
    admin, operator = User.objects.get(username="admin"), User.objects.get(username="operator")
    assert admin.is_superuser and admin.is_staff and operator.is_staff and not operator.is_superuser
    assert WorkspaceMembership.objects.get(user=operator).role == "operator"
    stored = dict(line.split("=", 1) for line in credentials.read_text().splitlines() if not line.startswith("#"))
    assert admin.check_password(stored["admin"]) and operator.check_password(stored["operator"])
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert stored["admin"] in out and stored["operator"] in out
    token = stored["operator:api-token"]
    assert auth_token_owner(token) == operator and token in out


def test_seed_demo_operator_signs_in_to_the_admin_and_sees_what_an_operator_may_do(credentials, client):
    """The operator ``seed_demo`` presents under "Sign in to the admin" can sign in (it was not staff) and works with
    its workspace's agents, runs, contexts and issues; it manages no members and creates no workspaces."""
    run("seed_demo", credentials_file=str(credentials))
    password = read_credentials(credentials)["operator"]
    assert client.login(username="operator", password=password)
    assert client.get("/admin/").status_code == 200
    agent = AgentInstance.objects.get(name="Search engineer")
    for page in ("agents/agentinstance/", f"agents/agentinstance/{agent.pk}/change/", "agents/agentrun/",
                 "agents/agentcontext/", "projects/issue/add/", "agents/agenttype/", "buildkit/agenttemplate/"):
        assert client.get(f"/admin/{page}").status_code == 200, page
    client.post(f"/admin/agents/agentinstance/{agent.pk}/transition/", {"transition": "pause"})
    assert status_of(agent) == S.PAUSED
    for page in ("projects/workspace/add/", "projects/workspacemembership/add/", "agents/agenttype/add/"):
        assert client.get(f"/admin/{page}").status_code == 403, page


def test_seed_demo_makes_an_existing_operator_staff_and_keeps_its_group_exact(credentials):
    from django.contrib.auth.models import Group, Permission

    UserFactory(username="operator", is_staff=False)
    run("seed_demo", credentials_file=str(credentials))
    operator = get_user_model().objects.get(username="operator")
    assert operator.is_staff and list(operator.groups.values_list("name", flat=True)) == ["Workspace operators"]
    group = Group.objects.get(name="Workspace operators")
    group.permissions.add(Permission.objects.get(codename="delete_workspace"))
    run("seed_demo", credentials_file=str(credentials))
    assert not group.permissions.filter(codename="delete_workspace").exists()
    assert group.permissions.filter(codename="change_agentrun").exists()


def test_prepare_demo_migrates_only_what_is_pending_and_seeds_once(credentials):
    from agents.management.commands.prepare_demo import pending_migrations

    assert pending_migrations() == 0  # the test database is migrated: prepare_demo applies nothing
    first = run("prepare_demo", credentials_file=str(credentials))
    assert "Applying" not in first and "Demo data created" in first and AgentInstance.objects.count() == 15
    second = run("prepare_demo", credentials_file=str(credentials))
    assert "nothing to create" in second and AgentInstance.objects.count() == 15


def test_seed_demo_keeps_a_working_token_and_replaces_a_revoked_one(credentials):
    run("seed_demo", credentials_file=str(credentials))
    token = read_credentials(credentials)["operator:api-token"]
    assert token in run("seed_demo", credentials_file=str(credentials))
    assert AuthToken.objects.filter(user__username="operator").count() == 1
    AuthToken.objects.filter(user__username="operator").delete()  # revoked (a logout, a password change)
    out = run("seed_demo", credentials_file=str(credentials))
    fresh = read_credentials(credentials)["operator:api-token"]
    assert fresh != token and fresh in out and auth_token_owner(fresh).username == "operator"


def test_seed_demo_is_idempotent(credentials):
    first = run("seed_demo", credentials_file=str(credentials))
    before = counts()
    usage = list(AgentInstance.objects.order_by("pk").values_list("tokens_used", "cost_incurred", "status"))
    second = run("seed_demo", credentials_file=str(credentials))
    assert counts() == before
    assert list(AgentInstance.objects.order_by("pk").values_list("tokens_used", "cost_incurred", "status")) == usage
    assert "nothing to create" in second
    stored = dict(line.split("=", 1) for line in credentials.read_text().splitlines() if not line.startswith("#"))
    assert stored["admin"] in first and stored["admin"] in second  # printed again on every run


def test_seed_demo_takes_passwords_from_the_environment(credentials, monkeypatch):
    monkeypatch.setenv("SYNDARIX_DEMO_ADMIN_PASSWORD", "admin-Pass-123")
    monkeypatch.setenv("SYNDARIX_DEMO_OPERATOR_PASSWORD", "op-Pass-456")
    out = run("seed_demo", credentials_file=str(credentials))
    User = get_user_model()
    assert User.objects.get(username="admin").check_password("admin-Pass-123")
    assert User.objects.get(username="operator").check_password("op-Pass-456")
    assert "admin-Pass-123" in out
    monkeypatch.setenv("SYNDARIX_DEMO_ADMIN_PASSWORD", "changed-Pass-789")
    out = run("seed_demo", credentials_file=str(credentials))
    assert User.objects.get(username="admin").check_password("changed-Pass-789")
    assert "set from SYNDARIX_DEMO_ADMIN_PASSWORD" in out


def test_seed_demo_reuses_stored_passwords_on_a_fresh_database(credentials):
    credentials.write_text("admin=kept-Pass-1\noperator=kept-Pass-2\n")
    run("seed_demo", credentials_file=str(credentials))
    assert get_user_model().objects.get(username="admin").check_password("kept-Pass-1")


def test_seed_demo_with_an_unknown_existing_password_says_so(credentials):
    UserFactory(username="admin", is_superuser=True, is_staff=True)
    out = run("seed_demo", credentials_file=str(credentials))
    assert "password not recorded" in out and "changepassword admin" in out
    assert "admin=" not in credentials.read_text()


def test_seed_demo_dry_run_changes_nothing(credentials):
    before = counts()
    out = run("seed_demo", dry_run=True, credentials_file=str(credentials))
    assert "Dry run: would create" in out and "15 agents" in out
    assert counts() == before and not credentials.exists()


def test_seed_demo_verbosity(credentials):
    assert run("seed_demo", verbosity=0, credentials_file=str(credentials)) == ""
    assert AgentInstance.objects.count() == 15
    out = run("seed_demo", verbosity=2, credentials_file=str(credentials))
    assert "created" not in out  # nothing new to list


def test_seed_demo_verbosity_2_lists_each_object(credentials):
    out = run("seed_demo", verbosity=2, credentials_file=str(credentials))
    assert "created agent: Checkout engineer (idle)" in out
    assert "created group: Workspace operators" in out
    assert "created agent type: qa" in out


def test_seed_demo_fails_cleanly_when_agents_are_disabled(credentials, settings):
    settings.AGENTS_ENABLED = False
    with pytest.raises(CommandError, match="Agents are disabled"):
        run("seed_demo", credentials_file=str(credentials))
    assert AgentInstance.objects.count() == 0 and not Workspace.objects.exists()  # rolled back


# --- spawn_agent ---


@pytest.fixture
def engineer(db):
    return AgentTypeFactory(slug="engineer")


def test_spawn_agent_by_slugs(project, engineer):
    out = run("spawn_agent", project=f"{project.workspace.slug}/{project.slug}", agent_type="engineer",
              name="Builder", config='{"retries": 2}', task="build it")
    agent = AgentInstance.objects.get(name="Builder")
    assert (agent.project, agent.agent_type, agent.status, agent.config, agent.current_task) == (
        project, engineer, S.IDLE, {"retries": 2}, "build it",
    )
    assert str(agent.pk) in out and "Spawned 'Builder'" in out
    assert agent.transitions.get().reason == "spawned"


def test_spawn_agent_by_ids_with_an_actor(project, engineer, user):
    run("spawn_agent", project=str(project.pk), agent_type=str(engineer.pk), name="X", actor=user.username)
    assert AgentInstance.objects.get(name="X").transitions.get().actor == user


def test_spawn_agent_reports_schema_errors_with_their_path(project, engineer):
    with pytest.raises(CommandError) as info:
        run("spawn_agent", project=str(project.pk), agent_type="engineer", name="X", config='{"retries": -1}')
    assert "config.retries: -1 is less than the minimum of 0" in str(info.value)
    assert not AgentInstance.objects.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"config": "{oops"}, "--config is not valid JSON"),
        ({"project": "nope"}, "No project 'nope'"),
        ({"agent_type": "nope"}, "No agent type 'nope'"),
        ({"actor": "ghost"}, "No user 'ghost'"),
    ],
)
def test_spawn_agent_input_errors(project, engineer, options, message):
    kwargs = {"project": str(project.pk), "agent_type": "engineer", "name": "X", **options}
    with pytest.raises(CommandError, match=message):
        run("spawn_agent", **kwargs)
    assert not AgentInstance.objects.exists()


def test_spawn_agent_ambiguous_slug(engineer):
    ProjectFactory(slug="web")
    ProjectFactory(slug="web")
    with pytest.raises(CommandError, match="Several workspaces"):
        run("spawn_agent", project="web", agent_type="engineer", name="X")


def test_spawn_agent_inactive_type(project):
    AgentTypeFactory(slug="old", is_active=False)
    with pytest.raises(CommandError, match="inactive"):
        run("spawn_agent", project=str(project.pk), agent_type="old", name="X")


def test_spawn_agent_dry_run(project, engineer):
    out = run("spawn_agent", project=str(project.pk), agent_type="engineer", name="Ghost", dry_run=True)
    assert "would be spawned" in out
    assert not AgentInstance.objects.exists() and not AgentTransition.objects.exists()


# --- pause_agent / resume_agent / terminate_agent ---


def test_pause_agent(agent, user):
    out = run("pause_agent", str(agent.pk), reason="maintenance", actor=user.username)
    assert f"Paused '{agent.name}' ({agent.pk}): idle → paused." in out
    assert status_of(agent) == S.PAUSED
    row = agent.transitions.order_by("-created_at").first()
    assert (row.reason, row.actor) == ("maintenance", user)


def test_resume_agent():
    agent = agent_in_status(S.PAUSED)
    out = run("resume_agent", str(agent.pk))
    assert "Resumed" in out and status_of(agent) == S.IDLE
    assert agent.transitions.order_by("-created_at").first().actor is None  # the system


def test_terminate_agent_with_reasons():
    agent = agent_in_status(S.WORKING)
    run("terminate_agent", str(agent.pk), reason="stuck", termination_reason="timed_out")
    agent.refresh_from_db()
    assert (agent.status, agent.termination_reason) == (S.TERMINATED, "timed_out")
    assert agent.transitions.order_by("-created_at").first().reason == "stuck"


@pytest.mark.parametrize(
    ("command", "status", "message"),
    [
        ("pause_agent", S.TERMINATED, "Cannot transition agent from 'terminated' to 'paused'."),
        ("resume_agent", S.WORKING, "Only an agent in 'paused' can do this; the agent is 'working'."),
        ("terminate_agent", S.TERMINATED, "Agent is already terminated."),
    ],
)
def test_illegal_transition_raises_command_error_with_the_message(command, status, message):
    agent = agent_in_status(status)
    before = agent.transitions.count()
    with pytest.raises(CommandError) as info:
        run(command, str(agent.pk))
    assert message in str(info.value) and agent.name in str(info.value)
    assert status_of(agent) == status and agent.transitions.count() == before


def test_illegal_transition_exits_non_zero_from_the_command_line(capsys):
    agent = agent_in_status(S.TERMINATED)
    with pytest.raises(SystemExit) as info:
        execute_from_command_line(["manage.py", "pause_agent", str(agent.pk)])
    assert info.value.code == 1
    assert "Cannot transition agent from 'terminated' to 'paused'." in capsys.readouterr().err


def test_repeated_transition_is_a_no_op_success():
    agent = agent_in_status(S.PAUSED)
    out = run("pause_agent", str(agent.pk))
    assert "already paused; nothing to do" in out


def test_lifecycle_dry_run_changes_nothing(agent):
    out = run("terminate_agent", str(agent.pk), dry_run=True)
    assert "Would have terminated" in out and "Dry run" in out
    assert status_of(agent) == S.IDLE and agent.transitions.count() == 1


def test_lifecycle_commands_take_several_ids_and_report_each_failure(project, agent_type):
    ok = [AgentFactory(project=project, agent_type=agent_type) for _ in range(2)]
    dead = agent_in_status(S.TERMINATED, project=project, agent_type=agent_type)
    err = StringIO()
    with pytest.raises(CommandError, match="2 of 4 agents could not be paused"):
        call_command("pause_agent", str(ok[0].pk), str(dead.pk), "not-a-uuid", str(ok[1].pk),
                     stdout=StringIO(), stderr=err)
    assert all(status_of(a) == S.PAUSED for a in ok)
    assert "'not-a-uuid' is not an agent id" in err.getvalue() and dead.name in err.getvalue()


def test_unknown_agent_id():
    with pytest.raises(CommandError, match="No agent with id 00000000-0000-0000-0000-000000000000"):
        run("resume_agent", "00000000-0000-0000-0000-000000000000")


def test_quiet_lifecycle_command(agent):
    assert run("pause_agent", str(agent.pk), verbosity=0) == ""
    assert status_of(agent) == S.PAUSED


# --- agent_metrics ---


@pytest.fixture
def fleet(workspace, user, agent_type):
    from agents import services

    alpha = ProjectFactory(workspace=workspace, owner=user, slug="alpha", name="Alpha")
    beta = ProjectFactory(workspace=workspace, owner=user, slug="beta", name="Beta")
    for status in (S.IDLE, S.WORKING, S.WORKING, S.PAUSED):
        agent_in_status(status, project=alpha, agent_type=agent_type)
    spender = agent_in_status(S.WAITING, project=beta, agent_type=agent_type)
    services.agent_record_usage(spender, tokens=2_500_000, cost="3.125", tasks_completed=7)
    agent_in_status(S.TERMINATED, project=beta, agent_type=agent_type)
    return alpha, beta


def test_agent_metrics_table(fleet):
    out = run("agent_metrics")
    lines = out.splitlines()
    assert lines[0].split() == ["project", "idle", "working", "waiting", "paused", "terminated", "total", "tasks",
                                "tokens", "cost", "(USD)"]
    alpha = next(line for line in lines if "/alpha" in line).split()
    beta = next(line for line in lines if "/beta" in line).split()
    assert alpha[1:] == ["1", "2", "0", "1", "0", "4", "0", "0", "0.0000"]
    assert beta[1:] == ["0", "0", "1", "0", "1", "2", "7", "2,500,000", "3.1250"]
    assert lines[-1].split() == ["TOTAL", "1", "2", "1", "1", "1", "6", "7", "2,500,000", "3.1250"]


def test_agent_metrics_json(fleet, django_assert_num_queries):
    with django_assert_num_queries(1):
        out = run("agent_metrics", json=True)
    data = json.loads(out)
    beta = next(p for p in data["projects"] if p["project_slug"] == "beta")
    assert beta["total_instances"] == 2 and beta["waiting_instances"] == 1 and beta["terminated_instances"] == 1
    assert beta["total_tokens_used"] == 2_500_000 and beta["total_cost_incurred"] == "3.125000"
    assert data["totals"]["total_instances"] == 6 and data["totals"]["active_instances"] == 2


def test_agent_metrics_filters(fleet):
    alpha, beta = fleet
    ProjectFactory(slug="elsewhere")
    data = json.loads(run("agent_metrics", json=True, workspace=alpha.workspace.slug))
    assert {p["project_slug"] for p in data["projects"]} == {"alpha", "beta"}
    data = json.loads(run("agent_metrics", json=True, project=f"{beta.workspace.slug}/beta"))
    assert [p["project_slug"] for p in data["projects"]] == ["beta"]


def test_agent_metrics_without_projects(db):
    assert run("agent_metrics").strip() == "No projects."


def test_seed_demo_templates_are_valid_and_builtin_agents_ran_their_hooks(tmp_path, django_capture_on_commit_callbacks):
    from buildkit.schema import template_errors

    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo", credentials_file=str(tmp_path / "creds"), stdout=StringIO())
    for agent_type in AgentType.objects.filter(revisions__isnull=False):
        assert template_errors(agent_type.revisions.get(version=1).template) == {}
    reviewer = AgentInstance.objects.get(name="Pull-request reviewer")
    assert reviewer.agent_type.handler == "reviewer"
    # sync_agent_types committed the class's template as the built-in type's first revision
    assert reviewer.agent_type_revision.version == 1
    assert reviewer.effective_template == registry.get("reviewer").template
    assert reviewer.short_term_memory, "the reviewer's hooks should have filled its memory"
