"""Revisions, spawning from a revision, playground runs and inspect, through the services."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError

from agents import services as agent_services
from agents.models import AgentInstance, AgentTypeRevision
from buildkit import services
from buildkit.embed import EmbedNotFound, iter_embeds
from buildkit.overlay import apply_overlay, build_overlay
from buildkit.selectors import capabilities_find
from syndarix.exceptions import InvalidInput
from tests import factories
from tests.threads import failures, run_concurrently

pytestmark = pytest.mark.django_db


# --- revisions --------------------------------------------------------------------------------

def test_commits_number_versions_per_agent_type(agent_type, commit, template, staff):
    other = factories.AgentTypeFactory()
    first = commit(agent_type, template, "first")
    second = commit(agent_type, template, "second")
    elsewhere = commit(other, template)
    assert (first.version, second.version, elsewhere.version) == (1, 2, 1)
    assert (second.message, second.author, second.template) == ("second", staff, template)


def test_revisions_are_immutable(agent_type, commit, template):
    revision = commit(agent_type, template)
    revision.message = "rewritten"
    with pytest.raises(ValueError):
        revision.save()
    with pytest.raises(ValueError):
        revision.delete()
    with pytest.raises(TypeError):
        AgentTypeRevision.objects.filter(pk=revision.pk).update(message="x")
    assert AgentTypeRevision.objects.get(pk=revision.pk).message == ""


def test_commit_validates_and_writes_nothing_when_invalid(agent_type, commit):
    with pytest.raises(ValidationError) as info:
        commit(agent_type, {"llm": {"model": "m"}, "tools": [{"type": "platform", "op": "nope"}]})
    assert "template.tools.0.op" in info.value.message_dict
    assert not AgentTypeRevision.objects.exists()


def test_agents_service_refuses_a_non_object_template(agent_type):
    with pytest.raises(InvalidInput):
        agent_services.agent_type_commit_revision(agent_type, template=["x"], message="")


def test_deleting_an_agent_type_takes_its_revisions(commit, template):
    agent_type = factories.AgentTypeFactory()
    commit(agent_type, template)
    agent_type.delete()
    assert not AgentTypeRevision.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_commits_get_consecutive_versions(template):
    agent_type = factories.AgentTypeFactory()
    threads_count, per_thread = 8, 5

    def work(n):
        for i in range(per_thread):
            services.template_commit(agent_type=agent_type, template=template, message=f"{n}-{i}")

    assert failures(run_concurrently(threads_count, work)) == []
    versions = sorted(AgentTypeRevision.objects.filter(agent_type=agent_type).values_list("version", flat=True))
    assert versions == list(range(1, threads_count * per_thread + 1))


# --- spawning records the revision and the effective template --------------------------------

def test_spawn_defaults_to_the_latest_revision(project, agent_type, commit, template):
    commit(agent_type, {"llm": {"model": "old"}})
    latest = commit(agent_type, template)
    agent = agent_services.agent_spawn(project=project, agent_type=agent_type, name="a")
    agent.refresh_from_db()
    assert agent.agent_type_revision == latest
    assert agent.effective_template == template


def test_spawn_without_revisions_records_none(project, agent_type):
    agent = agent_services.agent_spawn(project=project, agent_type=agent_type, name="a")
    assert agent.agent_type_revision is None and agent.effective_template is None


def test_spawn_with_a_pinned_revision_and_an_explicit_template(project, agent_type, commit, template):
    first = commit(agent_type, template)
    commit(agent_type, {"llm": {"model": "newer"}})
    agent = agent_services.agent_spawn(
        project=project, agent_type=agent_type, name="a", agent_type_revision=first, template={"llm": {"model": "x"}}
    )
    agent.refresh_from_db()
    assert agent.agent_type_revision == first
    assert agent.effective_template == {"llm": {"model": "x"}}


def test_spawn_refuses_another_types_revision(project, agent_type, commit, template):
    foreign = commit(factories.AgentTypeFactory(), template)
    with pytest.raises(InvalidInput):
        agent_services.agent_spawn(project=project, agent_type=agent_type, name="a", agent_type_revision=foreign)


def test_a_spawned_revision_cannot_be_deleted_with_its_type(project, agent_type, commit, template):
    from django.db.models import ProtectedError

    commit(agent_type, template)
    agent_services.agent_spawn(project=project, agent_type=agent_type, name="a")
    with pytest.raises(ProtectedError):
        agent_type.delete()


# --- the agents app never knows about the build kit -------------------------------------------

def test_no_agents_module_imports_buildkit():
    root = Path(settings.BASE_DIR) / "agents"
    offenders = []
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "buildkit"]
        assert "build_overlay" not in path.read_text(encoding="utf-8")
    assert offenders == []


# --- playground runs --------------------------------------------------------------------------

def test_kit_on_run_spawns_a_playground_agent_with_the_effective_template(project, agent_type, commit, template, user):
    latest = commit(agent_type, template)
    run = services.playground_run(agent_type=agent_type, project=project, actor=user)
    agent = AgentInstance.objects.get(pk=run.agent.pk)
    merged, overrides = apply_overlay(template, build_overlay())
    assert agent.is_playground and agent.agent_type_revision == latest
    assert agent.effective_template == run.effective
    # the kit's tools are in, embeds resolved: the client tools and the skill are inline now
    ops = [t["op"] for t in run.effective["tools"] if t.get("type") == "platform"]
    assert ops[0] == "query_agents" and "commit_revision" in ops
    assert [t["name"] for t in run.effective["tools"] if t.get("type") == "client"] == [
        "request_connection", "request_input"]
    assert run.effective["skills"][0]["name"] == "syndarix-getting-started"
    assert list(iter_embeds(run.effective)) == []
    assert run.effective["sandbox"]["permissions"] == {"write_files": "allow", "execute_code": "allow"}
    assert run.overrides == overrides == [
        {"path": "sandbox.permissions.write_files", "user_value": "deny", "kit_value": "allow"}
    ]
    assert [t for t in merged["tools"] if t.get("type") == "platform"] == [
        t for t in run.effective["tools"] if t.get("type") == "platform"]
    assert run.template_source == "revision"


def test_kit_off_run_spawns_exactly_the_draft(project, agent_type, template, user):
    run = services.playground_run(agent_type=agent_type, project=project, actor=user, template=template,
                                  build_kit=False)
    assert run.effective == template
    assert run.overrides == []
    assert AgentInstance.objects.get(pk=run.agent.pk).effective_template == template


def test_the_draft_is_never_changed(project, agent_type, template, user):
    draft = copy.deepcopy(template)
    services.playground_run(agent_type=agent_type, project=project, actor=user, template=draft)
    assert draft == template


def test_commit_after_a_kit_on_run_stores_exactly_the_submitted_template(project, agent_type, template, user, staff):
    run = services.playground_run(agent_type=agent_type, project=project, actor=user, template=template)
    assert run.effective != template
    revision = services.template_commit(agent_type=agent_type, template=template, message="ship", author=staff)
    assert AgentTypeRevision.objects.get(pk=revision.pk).template == template


def test_run_without_template_or_revision_is_refused(project, agent_type, user):
    with pytest.raises(InvalidInput) as info:
        services.playground_run(agent_type=agent_type, project=project, actor=user)
    assert info.value.field == "template"
    assert not AgentInstance.objects.exists()


def test_run_with_an_unresolvable_embed_spawns_nothing(project, agent_type, user):
    draft = {"llm": {"model": "m"}, "skills": [{"@ag.embed": {"@ag.references": {"workflow": {"slug": "nobody"}}}}]}
    with pytest.raises(EmbedNotFound) as info:
        services.playground_run(agent_type=agent_type, project=project, actor=user, template=draft)
    assert info.value.path == "template.skills.0"
    assert not AgentInstance.objects.exists()


def test_playground_agents_reach_the_agents_service_only_as_a_template(project, agent_type, template, user,
                                                                     monkeypatch):
    """The agents service gets the effective template and the playground flag, nothing about the kit."""
    seen = {}
    real = services.agent_spawn

    def spy(**kwargs):
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(services, "agent_spawn", spy)
    run = services.playground_run(agent_type=agent_type, project=project, actor=user, template=template)
    assert seen["is_playground"] is True
    assert seen["template"] == run.effective
    assert not {"overlay", "build_kit", "overrides"} & set(seen)


def test_inactive_agent_type_cannot_run(project, template, user):
    agent_type = factories.AgentTypeFactory(is_active=False)
    with pytest.raises(InvalidInput):
        services.playground_run(agent_type=agent_type, project=project, actor=user, template=template)


# --- inspect ----------------------------------------------------------------------------------

def test_inspect_reads_the_latest_revision_and_the_overlay(agent_type, commit, template):
    commit(agent_type, {"llm": {"model": "old"}})
    latest = commit(agent_type, template)
    inspection = services.agent_type_inspect(agent_type=agent_type)
    assert inspection.revision == latest
    assert inspection.overlay == build_overlay()


def test_inspect_survives_an_overlay_failure_and_logs_it(agent_type, monkeypatch, caplog):
    def broken():
        raise RuntimeError("catalog unavailable")

    monkeypatch.setattr(services, "build_overlay", broken)
    inspection = services.agent_type_inspect(agent_type=agent_type)
    assert inspection.overlay is None
    assert "build-kit overlay failed" in caplog.text and "catalog unavailable" in caplog.text


# --- find_capabilities --------------------------------------------------------------------------

def test_capabilities_match_words_of_the_use_case():
    factories.AgentTypeFactory(name="Issue triager", slug="triager", capabilities=["triage", "labels"],
                               description="Labels new GitHub issues.", handler="triage-bot")
    factories.AgentTypeFactory(name="Writer", slug="writer", capabilities=["docs"], description="Writes docs.")
    factories.AgentTypeFactory(name="Old triager", slug="old-triager", capabilities=["triage"], is_active=False)
    results = capabilities_find(use_cases=["I need to triage and label GitHub issues", "bake bread"], limit=5)
    assert [m["slug"] for m in results[0]["matches"]] == ["triager"]
    match = results[0]["matches"][0]
    assert match["agent_class"] == "triage-bot" and "triage" in match["matched_terms"]
    assert match["kind"] == "agent_type"
    assert results[1] == {"use_case": "bake bread", "matches": []}


def test_find_capabilities_includes_registered_classes_no_agent_type_names(django_assert_num_queries):
    """The built-in classes are registered; until an agent type names one as its handler, it is
    listed on its own, marked ``agent_class``, without an agent type id."""
    with django_assert_num_queries(1):
        results = capabilities_find(use_cases=["security review of code changes"], limit=5)
    match = results[0]["matches"][0]
    assert match == {
        "kind": "agent_class", "agent_type_id": None, "slug": "reviewer", "name": "Reviewer",
        "description": match["description"], "capabilities": ["code_review", "security_review", "style_check"],
        "agent_class": "reviewer", "score": match["score"], "matched_terms": ["security", "review", "code", "changes"],
    }


def test_a_class_an_agent_type_names_is_found_through_the_type():
    reviewing = factories.AgentTypeFactory(name="Code reviewing", slug="code-reviewing", handler="reviewer",
                                           capabilities=["code_review"])
    matches = capabilities_find(use_cases=["security review of code changes"])[0]["matches"]
    reviewer = [m for m in matches if m["agent_class"] == "reviewer"]
    assert [(m["kind"], m["agent_type_id"]) for m in reviewer] == [("agent_type", reviewing.pk)]


def test_a_class_behind_an_inactive_type_is_not_offered():
    factories.AgentTypeFactory(slug="reviewer", handler="reviewer", is_active=False)
    matches = capabilities_find(use_cases=["security review of code changes"])[0]["matches"]
    assert "reviewer" not in [m["agent_class"] for m in matches]


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_with_one_idempotency_key_spawn_once_and_answer_alike(template):
    """Runs racing with the same key: one agent, and every caller gets the first run's answer."""
    project = factories.ProjectFactory()
    agent_type = factories.AgentTypeFactory()
    threads_count = 6

    def work(n):
        draft = {**template, "sandbox": {"permissions": {"execute_code": "deny"}}} if n % 2 else template
        run = services.playground_run(agent_type=agent_type, project=project, template=draft,
                                      build_kit=bool(n % 3), request_id="same-key")
        return (run.agent.pk, run.effective, run.overrides, run.build_kit, run.template_source, run.references_used)

    answers = run_concurrently(threads_count, work)
    assert failures(answers) == []
    assert AgentInstance.objects.filter(project=project).count() == 1
    assert len(answers) == threads_count and all(answer == answers[0] for answer in answers)
