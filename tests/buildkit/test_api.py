"""The build-kit API: revisions, diff, inspect, playground runs, resolve, platform ops, capabilities."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from agents.models import AgentInstance, AgentTypeRevision
from buildkit import services, views
from buildkit.overlay import build_overlay
from buildkit.schema import TEMPLATE_MAX_BYTES
from projects.choices import WorkspaceRole
from tests import factories
from tests.buildkit.conftest import embed
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def revisions_url(agent_type_id):
    return f"/api/v1/agent-types/{agent_type_id}/revisions"


def codes(response):
    return [e["code"] for e in response.json()["errors"]]


def fields(response):
    return [e["field"] for e in response.json()["errors"]]


@pytest.fixture
def limit(monkeypatch):
    """``limit(ViewClass, method, rate)``: lower one view's rate limit for a test."""

    def set_limit(view_class, method, rate):
        monkeypatch.setattr(view_class, "rate_limits", {**view_class.rate_limits, method: rate})

    return set_limit


# --- revisions: commit --------------------------------------------------------------------------

def test_commit_returns_201_and_stores_exactly_the_template(staff_client, agent_type, template, staff):
    response = staff_client.post(revisions_url(agent_type.pk), {"template": template, "message": "first"},
                                 format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["version"], body["message"], body["author"], body["template"]) == (1, "first", "editor", template)
    assert body["agent_type_id"] == str(agent_type.pk)
    assert AgentTypeRevision.objects.get(pk=body["id"]).template == template
    again = staff_client.post(revisions_url(agent_type.pk), {"template": template}, format="json")
    assert again.json()["version"] == 2 and again.json()["message"] == ""


def test_commit_reports_each_template_error_at_its_path(staff_client, agent_type):
    template = {"llm": {"model": ""}, "tools": [{"type": "platform", "op": "nope"}]}
    response = staff_client.post(revisions_url(agent_type.pk), {"template": template}, format="json")
    assert response.status_code == 400
    assert set(fields(response)) == {"template.llm.model", "template.tools.0.op"}
    assert not AgentTypeRevision.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "template"), ({"template": ["a"]}, "template"), ({"template": "x"}, "template"),
     ({"template": {"llm": {"model": "m"}}, "message": "x" * 2001}, "message")],
)
def test_commit_refuses_malformed_bodies(staff_client, agent_type, body, field):
    response = staff_client.post(revisions_url(agent_type.pk), body, format="json")
    assert response.status_code == 400
    assert fields(response) == [field]


def test_commit_refuses_embedding_the_build_kit(staff_client, agent_type):
    template = {"llm": {"model": "m"}, "skills": [{"@ag.embed": {"@ag.references": {"workflow": {
        "slug": "__sx__build_kit"}}}}]}
    response = staff_client.post(revisions_url(agent_type.pk), {"template": template}, format="json")
    assert response.status_code == 400 and fields(response) == ["template.skills.0"]


def test_commit_of_an_oversized_template_is_413(staff_client, agent_type):
    template = {"llm": {"model": "m"}, "instructions": {"agents_md": "x" * TEMPLATE_MAX_BYTES}}
    response = staff_client.post(revisions_url(agent_type.pk), {"template": template}, format="json")
    assert response.status_code == 413 and codes(response) == ["payload_too_large"]


def test_commit_needs_authentication(api_client, agent_type, template):
    response = api_client.post(revisions_url(agent_type.pk), {"template": template}, format="json")
    assert response.status_code == 401 and codes(response) == ["not_authenticated"]


def test_commit_needs_staff_with_the_change_permission(owner_client, agent_type, template, db):
    response = owner_client.post(revisions_url(agent_type.pk), {"template": template}, format="json")
    assert response.status_code == 403 and codes(response) == ["permission_denied"]
    staff_without = factories.UserFactory(username="staff-only", is_staff=True)
    response = client_for(staff_without).post(revisions_url(agent_type.pk), {"template": template}, format="json")
    assert response.status_code == 403
    perm_without_staff = factories.UserFactory(username="perm-only")
    perm_without_staff.user_permissions.add(Permission.objects.get(codename="change_agenttype"))
    response = client_for(perm_without_staff).post(revisions_url(agent_type.pk), {"template": template},
                                                   format="json")
    assert response.status_code == 403
    assert not AgentTypeRevision.objects.exists()


def test_superuser_can_commit(superuser, agent_type, template):
    response = client_for(superuser).post(revisions_url(agent_type.pk), {"template": template}, format="json")
    assert response.status_code == 201


def test_commit_to_an_unknown_agent_type_is_404(staff_client, template):
    response = staff_client.post(revisions_url(uuid.uuid4()), {"template": template}, format="json")
    assert response.status_code == 404 and codes(response) == ["not_found"]


def test_commit_is_rate_limited(staff_client, agent_type, template, limit):
    limit(views.RevisionListCreateView, "post", "2/m")
    for _ in range(2):
        assert staff_client.post(revisions_url(agent_type.pk), {"template": template}, format="json").status_code == 201
    response = staff_client.post(revisions_url(agent_type.pk), {"template": template}, format="json")
    assert response.status_code == 429 and codes(response) == ["rate_limited"]
    assert int(response["Retry-After"]) >= 1
    assert AgentTypeRevision.objects.count() == 2


# --- revisions: read ----------------------------------------------------------------------------

def test_list_is_newest_first_without_templates(owner_client, agent_type, commit, template):
    for n in range(3):
        commit(agent_type, template, f"m{n}")
    commit(factories.AgentTypeFactory(), template)
    response = owner_client.get(revisions_url(agent_type.pk))
    assert response.status_code == 200
    body = response.json()
    assert [r["version"] for r in body["data"]] == [3, 2, 1]
    assert body["data"][0]["message"] == "m2" and "template" not in body["data"][0]
    assert body["pagination"]["total"] == 3
    assert response["X-RateLimit-Limit"] == "120"


def test_list_query_count_is_the_same_for_one_and_many(owner_client, agent_type, commit, template,
                                                       django_assert_num_queries):
    commit(agent_type, template)
    owner_client.get(revisions_url(agent_type.pk))  # the token cached
    with CaptureQueriesContext(connection) as one:
        owner_client.get(revisions_url(agent_type.pk))
    for _ in range(6):
        commit(agent_type, template)
    with django_assert_num_queries(len(one)):
        response = owner_client.get(revisions_url(agent_type.pk))
    assert len(response.json()["data"]) == 7
    assert len(one) == 3  # agent type, count, page (authors joined)


def test_list_paginates(owner_client, agent_type, commit, template):
    for _ in range(3):
        commit(agent_type, template)
    body = owner_client.get(revisions_url(agent_type.pk) + "?limit=2&page=2").json()
    assert [r["version"] for r in body["data"]] == [1]
    assert body["pagination"]["has_prev"] is True


def test_list_needs_authentication_and_a_known_type(api_client, owner_client):
    assert api_client.get(revisions_url(uuid.uuid4())).status_code == 401
    assert owner_client.get(revisions_url(uuid.uuid4())).status_code == 404


def test_list_is_rate_limited(owner_client, agent_type, limit):
    limit(views.RevisionListCreateView, "get", "1/m")
    assert owner_client.get(revisions_url(agent_type.pk)).status_code == 200
    assert owner_client.get(revisions_url(agent_type.pk)).status_code == 429


@pytest.mark.parametrize("version", ["1", "v1"])
def test_detail_has_the_template(owner_client, agent_type, commit, template, version):
    commit(agent_type, template, "first")
    response = owner_client.get(f"{revisions_url(agent_type.pk)}/{version}")
    assert response.status_code == 200
    assert response.json()["template"] == template and response.json()["version"] == 1


def test_detail_errors(owner_client, api_client, agent_type, commit, template):
    commit(agent_type, template)
    missing = owner_client.get(f"{revisions_url(agent_type.pk)}/2")
    assert missing.status_code == 404 and codes(missing) == ["revision_not_found"]
    bad = owner_client.get(f"{revisions_url(agent_type.pk)}/latest")
    assert bad.status_code == 400 and codes(bad) == ["invalid_version"]
    assert owner_client.get(f"{revisions_url(uuid.uuid4())}/1").status_code == 404
    assert api_client.get(f"{revisions_url(agent_type.pk)}/1").status_code == 401


def test_detail_is_rate_limited(owner_client, agent_type, commit, template, limit):
    commit(agent_type, template)
    limit(views.RevisionDetailView, "get", "1/m")
    assert owner_client.get(f"{revisions_url(agent_type.pk)}/1").status_code == 200
    assert owner_client.get(f"{revisions_url(agent_type.pk)}/1").status_code == 429


def test_diff_is_a_json_patch(owner_client, agent_type, commit, template):
    commit(agent_type, template)
    changed = {**template, "llm": {"model": "bigger"}, "tools": []}
    commit(agent_type, changed)
    response = owner_client.get(f"{revisions_url(agent_type.pk)}/1/diff/v2")
    assert response.status_code == 200
    body = response.json()
    assert (body["from_version"], body["to_version"]) == (1, 2)
    import jsonpatch

    assert jsonpatch.apply_patch(template, body["patch"]) == changed
    assert {"op": "replace", "path": "/llm/model", "value": "bigger"} in body["patch"]
    assert owner_client.get(f"{revisions_url(agent_type.pk)}/1/diff/1").json()["patch"] == []


def test_diff_errors(owner_client, api_client, agent_type, commit, template, limit):
    commit(agent_type, template)
    response = owner_client.get(f"{revisions_url(agent_type.pk)}/1/diff/3")
    assert response.status_code == 404 and fields(response) == ["to_version"]
    assert owner_client.get(f"{revisions_url(agent_type.pk)}/x/diff/1").status_code == 400
    assert api_client.get(f"{revisions_url(agent_type.pk)}/1/diff/1").status_code == 401
    limit(views.RevisionDiffView, "get", "1/m")
    assert owner_client.get(f"{revisions_url(agent_type.pk)}/1/diff/1").status_code == 200
    assert owner_client.get(f"{revisions_url(agent_type.pk)}/1/diff/1").status_code == 429


# --- inspect ------------------------------------------------------------------------------------

def inspect_url(agent_type_id):
    return f"/api/v1/agent-types/{agent_type_id}/inspect"


def test_inspect_shape(owner_client, agent_type, commit, template):
    commit(agent_type, {"llm": {"model": "old"}})
    commit(agent_type, template)
    response = owner_client.get(inspect_url(agent_type.pk))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "agent_type", "additional_context"}
    assert body["count"] == 1
    assert body["agent_type"]["id"] == str(agent_type.pk)
    assert body["agent_type"]["slug"] == agent_type.slug
    assert body["agent_type"]["data"] == {"parameters": {"agent": template}}
    assert body["agent_type"]["revision"] == 2
    assert body["additional_context"] == {"playground_build_kit": {"agent_template_overlay": build_overlay()}}


def test_inspect_without_revisions(owner_client, agent_type):
    body = owner_client.get(inspect_url(agent_type.pk)).json()
    assert body["agent_type"]["data"] == {"parameters": {"agent": None}}
    assert body["agent_type"]["revision"] is None
    assert "playground_build_kit" in body["additional_context"]


def test_inspect_answers_without_the_kit_when_it_cannot_be_built(owner_client, agent_type, commit, template,
                                                                 monkeypatch, caplog):
    commit(agent_type, template)
    monkeypatch.setattr(services, "build_overlay", lambda: 1 / 0)
    response = owner_client.get(inspect_url(agent_type.pk))
    assert response.status_code == 200
    body = response.json()
    assert "additional_context" not in body
    assert body["agent_type"]["data"]["parameters"]["agent"] == template
    assert "ZeroDivisionError" in caplog.text


def test_inspect_query_count(owner_client, agent_type, commit, template, django_assert_num_queries):
    commit(agent_type, template)
    with django_assert_num_queries(3):  # token, agent type, latest revision
        assert owner_client.get(inspect_url(agent_type.pk)).status_code == 200


def test_inspect_errors(api_client, owner_client, agent_type, limit):
    assert api_client.get(inspect_url(agent_type.pk)).status_code == 401
    assert owner_client.get(inspect_url(uuid.uuid4())).status_code == 404
    limit(views.InspectView, "get", "1/m")
    assert owner_client.get(inspect_url(agent_type.pk)).status_code == 200
    assert owner_client.get(inspect_url(agent_type.pk)).status_code == 429


# --- playground runs ---------------------------------------------------------------------------

def runs_url(agent_type_id):
    return f"/api/v1/agent-types/{agent_type_id}/playground/runs"


def test_run_spawns_a_playground_agent_with_the_effective_template(owner_client, project, agent_type, commit,
                                                                   template):
    commit(agent_type, template)
    response = owner_client.post(runs_url(agent_type.pk), {"project_id": str(project.pk), "name": "try-1"},
                                 format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    agent = AgentInstance.objects.get(pk=body["agent"]["id"])
    assert agent.is_playground and agent.name == "try-1" and agent.project == project
    assert body["agent"]["is_playground"] is True and body["agent"]["status"] == "idle"
    assert agent.effective_template == body["effective_template"]
    assert body["agent"]["agent_type_revision_id"] == str(agent.agent_type_revision_id)
    assert body["overrides"] == [{"path": "sandbox.permissions.write_files", "user_value": "deny",
                                  "kit_value": "allow"}]
    assert (body["build_kit"], body["template_source"], body["revision"]) == (True, "revision", 1)
    assert {"slug": "__sx__getting_started", "version": 1, "source": "static"} in body["references_used"]
    ops = [t["op"] for t in body["effective_template"]["tools"] if t.get("type") == "platform"]
    assert "commit_revision" in ops
    # nothing was committed
    assert AgentTypeRevision.objects.count() == 1


def test_run_a_draft_with_the_kit_off(owner_client, project, agent_type, template):
    draft = {**template, "tools": []}
    response = owner_client.post(runs_url(agent_type.pk),
                                 {"project_id": str(project.pk), "template": draft, "build_kit": False},
                                 format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["effective_template"] == draft
    assert (body["overrides"], body["template_source"], body["revision"]) == ([], "draft", None)
    assert body["agent"]["name"] == f"{agent_type.slug}-playground"


def test_run_reports_a_denied_permission_the_kit_allows(owner_client, project, agent_type, template):
    draft = {**template, "tools": [{"type": "platform", "op": "spawn_agent", "permission": "deny"}],
             "sandbox": {"permissions": {"execute_code": "deny"}}}
    body = owner_client.post(runs_url(agent_type.pk), {"project_id": str(project.pk), "template": draft},
                             format="json").json()
    assert body["overrides"] == [
        {"path": "tools.0.permission", "user_value": "deny", "kit_value": "ask"},
        {"path": "sandbox.permissions.execute_code", "user_value": "deny", "kit_value": "allow"},
    ]


def test_run_then_commit_stores_the_draft_not_the_effective_template(owner_client, staff_client, project,
                                                                     agent_type, template):
    run = owner_client.post(runs_url(agent_type.pk), {"project_id": str(project.pk), "template": template},
                            format="json").json()
    assert run["effective_template"] != template
    committed = staff_client.post(revisions_url(agent_type.pk), {"template": template}, format="json").json()
    assert committed["template"] == template
    assert AgentTypeRevision.objects.get().template == template


def test_run_replays_an_idempotency_key(owner_client, project, agent_type, template):
    body = {"project_id": str(project.pk), "template": template}
    first = owner_client.post(runs_url(agent_type.pk), body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    second = owner_client.post(runs_url(agent_type.pk), body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.json()["agent"]["id"] == second.json()["agent"]["id"]
    assert (first.json()["replayed"], second.json()["replayed"]) == (False, True)
    assert AgentInstance.objects.count() == 1


def test_a_replay_answers_what_the_first_run_answered_whatever_the_new_body(owner_client, project, agent_type,
                                                                            commit, template):
    commit(agent_type, {"llm": {"model": "published"}})
    first = owner_client.post(runs_url(agent_type.pk), {"project_id": str(project.pk), "template": template},
                              format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert first.status_code == 201 and first.json()["overrides"]
    # a different draft, kit off, another name, even an invalid template: the first run's answer comes back
    for other in ({"build_kit": False}, {"template": None}, {"template": {"llm": {}}, "name": "other"}):
        body = {"project_id": str(project.pk), **({"template": template} | other)}
        body = {k: v for k, v in body.items() if v is not None}
        again = owner_client.post(runs_url(agent_type.pk), body, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
        assert again.status_code == 201, again.json()
        expected = {**first.json(), "replayed": True}
        assert again.json() == expected, other
    assert AgentInstance.objects.count() == 1


def test_a_replay_shows_the_agent_as_it_is_now(owner_client, project, agent_type, template):
    from agents.services import agent_pause

    body = {"project_id": str(project.pk), "template": template}
    first = owner_client.post(runs_url(agent_type.pk), body, format="json", HTTP_IDEMPOTENCY_KEY="k-3").json()
    agent_pause(AgentInstance.objects.get(pk=first["agent"]["id"]))
    again = owner_client.post(runs_url(agent_type.pk), body, format="json", HTTP_IDEMPOTENCY_KEY="k-3").json()
    assert again["agent"]["status"] == "paused"
    assert again["effective_template"] == first["effective_template"]


def test_a_key_used_by_another_request_is_409(owner_client, project, agent_type, template):
    factories.AgentFactory(project=project, agent_type=agent_type, request_id="spawned")
    other_type = factories.AgentTypeFactory()
    body = {"project_id": str(project.pk), "template": template}
    response = owner_client.post(runs_url(agent_type.pk), body, format="json", HTTP_IDEMPOTENCY_KEY="spawned")
    assert response.status_code == 409 and codes(response) == ["idempotency_key_reused"]
    assert owner_client.post(runs_url(other_type.pk), body, format="json",
                             HTTP_IDEMPOTENCY_KEY="k-4").status_code == 201
    response = owner_client.post(runs_url(agent_type.pk), body, format="json", HTTP_IDEMPOTENCY_KEY="k-4")
    assert response.status_code == 409 and codes(response) == ["idempotency_key_reused"]
    assert AgentInstance.objects.count() == 2


def test_a_replay_while_agents_are_disabled_is_503(owner_client, project, agent_type, template, settings):
    body = {"project_id": str(project.pk), "template": template}
    assert owner_client.post(runs_url(agent_type.pk), body, format="json",
                             HTTP_IDEMPOTENCY_KEY="k-5").status_code == 201
    settings.AGENTS_ENABLED = False
    response = owner_client.post(runs_url(agent_type.pk), body, format="json", HTTP_IDEMPOTENCY_KEY="k-5")
    assert response.status_code == 503 and codes(response) == ["agents_disabled"]


def test_an_overlong_idempotency_key_is_400(owner_client, project, agent_type, template):
    body = {"project_id": str(project.pk), "template": template}
    response = owner_client.post(runs_url(agent_type.pk), body, format="json", HTTP_IDEMPOTENCY_KEY="k" * 201)
    assert response.status_code == 400 and fields(response) == ["Idempotency-Key"]
    assert not AgentInstance.objects.exists()


def test_run_by_a_workspace_operator(member_client, project, agent_type, template):
    response = member_client(WorkspaceRole.OPERATOR).post(
        runs_url(agent_type.pk), {"project_id": str(project.pk), "template": template}, format="json")
    assert response.status_code == 201


def test_run_by_a_viewer_is_403(member_client, project, agent_type, template):
    response = member_client(WorkspaceRole.VIEWER).post(
        runs_url(agent_type.pk), {"project_id": str(project.pk), "template": template}, format="json")
    assert response.status_code == 403 and codes(response) == ["permission_denied"]
    assert not AgentInstance.objects.exists()


def test_run_into_another_tenants_project_is_404(stranger_client, project, agent_type, template):
    response = stranger_client.post(runs_url(agent_type.pk), {"project_id": str(project.pk), "template": template},
                                    format="json")
    assert response.status_code == 404 and fields(response) == ["project_id"]
    assert not AgentInstance.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "project_id"),
        ({"project_id": "nope"}, "project_id"),
        ({"template": "x"}, "template"),
        ({"build_kit": "maybe"}, "build_kit"),
        ({"template": {"llm": {"model": "m"}, "tools": [{"type": "platform", "op": "nope"}]}}, "template.tools.0.op"),
        ({"template": {"llm": {"model": "m"}, "skills": [{"@ag.embed": {"@ag.references": {"workflow": {
            "slug": "missing"}}}}]}}, "template.skills.0"),
        ({}, "template"),  # no draft and no revision
        ({"template": {"llm": {"model": "m"}}, "config": {"retries": -1}}, "config.retries"),
    ],
)
def test_run_refuses_bad_input_and_spawns_nothing(owner_client, project, agent_type, body, field):
    payload = {"project_id": str(project.pk), **body} if field not in ("project_id",) else body
    response = owner_client.post(runs_url(agent_type.pk), payload, format="json")
    assert response.status_code == 400, response.json()
    assert field in fields(response)
    assert not AgentInstance.objects.exists()


def test_run_conflicts_and_unavailability(owner_client, project, agent_type, template, settings):
    project.workspace.max_concurrent_agents = 0
    project.workspace.save(update_fields=["max_concurrent_agents"])
    body = {"project_id": str(project.pk), "template": template}
    response = owner_client.post(runs_url(agent_type.pk), body, format="json")
    assert response.status_code == 409 and codes(response) == ["concurrency_limit"]
    settings.AGENTS_ENABLED = False
    response = owner_client.post(runs_url(agent_type.pk), body, format="json")
    assert response.status_code == 503 and codes(response) == ["agents_disabled"]


def test_run_auth_unknown_type_and_rate_limit(api_client, owner_client, project, agent_type, template, limit):
    body = {"project_id": str(project.pk), "template": template}
    assert api_client.post(runs_url(agent_type.pk), body, format="json").status_code == 401
    assert owner_client.post(runs_url(uuid.uuid4()), body, format="json").status_code == 404
    limit(views.PlaygroundRunView, "post", "1/m")
    assert owner_client.post(runs_url(agent_type.pk), body, format="json").status_code == 201
    response = owner_client.post(runs_url(agent_type.pk), body, format="json")
    assert response.status_code == 429
    assert AgentInstance.objects.count() == 1


# --- resolve ------------------------------------------------------------------------------------

RESOLVE = "/api/v1/agent-templates/resolve"


def test_resolve_a_template(owner_client):
    response = owner_client.post(RESOLVE, {"template": {"tools": [embed("__sx__request_input", version="v1")]}},
                                 format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["template"]["tools"][0]["name"] == "request_input"
    assert body["references_used"] == [{"slug": "__sx__request_input", "version": 1, "source": "static"}]
    assert (body["depth_reached"], body["embeds_resolved"], body["errors"]) == (1, 1, [])


def test_resolve_a_reference(owner_client, agent_type, commit, template):
    commit(agent_type, {**template, "skills": [embed("__sx__getting_started")]})
    body = owner_client.post(RESOLVE, {"reference": {"slug": agent_type.slug, "version": "1"}}, format="json").json()
    assert body["template"]["skills"][0]["name"] == "syndarix-getting-started"
    assert body["references_used"][0] == {"slug": agent_type.slug, "version": 1, "source": "agent_type"}


def test_resolve_fetches_the_build_kit_by_reference(owner_client):
    body = owner_client.post(RESOLVE, {"reference": {"slug": "__sx__build_kit"}}, format="json").json()
    assert body["template"]["sandbox"] == {"permissions": {"write_files": "allow", "execute_code": "allow"}}
    assert body["embeds_resolved"] == 3


def test_resolve_errors_name_their_path(owner_client):
    response = owner_client.post(RESOLVE, {"template": {"a": [embed("__sx__build_kit")]}}, format="json")
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert (error["code"], error["field"], error["path"]) == ("non_embeddable_reference", "template.a.0",
                                                              "template.a.0")


def test_resolve_with_the_placeholder_policy(owner_client):
    response = owner_client.post(RESOLVE, {"template": {"a": [embed("nobody")]}, "error_policy": "placeholder"},
                                 format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["template"] == {"a": ["<error:EmbedNotFound>"]}
    assert body["errors"][0]["type"] == "EmbedNotFound" and body["errors"][0]["path"] == "template.a.0"


def test_resolve_limits_from_the_request(owner_client):
    body = {"template": {"a": [embed("__sx__request_input")] * 3}, "max_embeds": 2, "error_policy": "keep"}
    response = owner_client.post(RESOLVE, body, format="json").json()
    assert response["embeds_resolved"] == 2 and response["errors"][0]["code"] == "embed_limit_exceeded"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "template"),
        ({"template": {}, "reference": {"slug": "x"}}, "template"),
        ({"template": []}, "template"),
        ({"reference": {}}, "reference.slug"),
        ({"reference": {"slug": "nobody"}}, "reference"),
        ({"reference": {"slug": "__sx__build_kit", "version": "x"}}, "reference.version"),
        ({"template": {}, "max_depth": 11}, "max_depth"),
        ({"template": {}, "max_embeds": 101}, "max_embeds"),
        ({"template": {}, "error_policy": "ignore"}, "error_policy"),
    ],
)
def test_resolve_refuses_bad_input(owner_client, body, field):
    response = owner_client.post(RESOLVE, body, format="json")
    assert response.status_code == 400, response.json()
    assert fields(response) == [field]


def test_resolve_auth_and_rate_limit(api_client, owner_client, limit):
    assert api_client.post(RESOLVE, {"template": {}}, format="json").status_code == 401
    limit(views.ResolveView, "post", "1/m")
    assert owner_client.post(RESOLVE, {"template": {}}, format="json").status_code == 200
    assert owner_client.post(RESOLVE, {"template": {}}, format="json").status_code == 429


# --- platform ops and capabilities ------------------------------------------------------------

def test_platform_ops_list(owner_client, api_client):
    response = owner_client.get("/api/v1/platform-ops")
    assert response.status_code == 200
    ops = {op["op"]: op for op in response.json()["data"]}
    assert ops["commit_revision"]["route"] == "/api/v1/agent-types/{agent_type_id}/revisions"
    assert ops["commit_revision"]["permission"] == "ask" and ops["query_agents"]["permission"] == "allow"
    assert response.json()["pagination"]["total"] == len(ops)
    assert api_client.get("/api/v1/platform-ops").status_code == 401
    page = owner_client.get("/api/v1/platform-ops", {"limit": 2, "page": 2}).json()
    assert [op["op"] for op in page["data"]] == list(ops)[2:4] and page["pagination"]["has_prev"] is True
    assert owner_client.get("/api/v1/platform-ops", {"page": 99}).status_code == 404


def test_platform_ops_list_is_rate_limited(owner_client, member_client, project, limit):
    limit(views.PlatformOpListView, "get", "1/m")
    first = owner_client.get("/api/v1/platform-ops")
    assert first.status_code == 200
    assert (first["X-RateLimit-Limit"], first["X-RateLimit-Remaining"]) == ("1", "0")
    response = owner_client.get("/api/v1/platform-ops")
    assert response.status_code == 429 and codes(response) == ["rate_limited"]
    assert int(response["Retry-After"]) >= 1
    # the counter is per user
    assert member_client(WorkspaceRole.VIEWER).get("/api/v1/platform-ops").status_code == 200


def test_find_capabilities(owner_client, api_client, limit):
    factories.AgentTypeFactory(name="Triager", slug="triager", capabilities=["triage"], description="Labels issues")
    response = owner_client.post("/api/v1/capabilities/find", {"use_cases": ["triage issues"]}, format="json")
    assert response.status_code == 200
    assert response.json()["data"][0]["matches"][0]["slug"] == "triager"
    assert response.json()["data"][0]["matches"][0]["kind"] == "agent_type"
    # a registered agent class that no agent type uses yet is found too, marked as such
    body = owner_client.post("/api/v1/capabilities/find", {"use_cases": ["run tests, check coverage"]},
                             format="json").json()
    tester = body["data"][0]["matches"][0]
    assert (tester["kind"], tester["slug"], tester["agent_type_id"], tester["agent_class"]) == (
        "agent_class", "tester", None, "tester")
    assert owner_client.post("/api/v1/capabilities/find", {"use_cases": []}, format="json").status_code == 400
    assert api_client.post("/api/v1/capabilities/find", {"use_cases": ["x"]}, format="json").status_code == 401
    limit(views.FindCapabilitiesView, "post", "1/m")
    assert owner_client.post("/api/v1/capabilities/find", {"use_cases": ["x"]}, format="json").status_code == 200
    assert owner_client.post("/api/v1/capabilities/find", {"use_cases": ["x"]}, format="json").status_code == 429


def test_schema_documents_every_build_kit_endpoint():
    client = APIClient()
    schema = client.get("/api/schema/?format=json").json()
    paths = schema["paths"]
    for path, method, statuses in [
        ("/api/v1/agent-types/{agent_type_id}/revisions", "post",
         {"201", "400", "401", "403", "404", "413", "429", "503"}),
        ("/api/v1/agent-types/{agent_type_id}/revisions", "get", {"200", "400", "401", "404", "429", "503"}),
        ("/api/v1/agent-types/{agent_type_id}/revisions/{version}", "get", {"200", "400", "401", "404", "429", "503"}),
        ("/api/v1/agent-types/{agent_type_id}/revisions/{from_version}/diff/{to_version}", "get",
         {"200", "400", "401", "404", "429", "503"}),
        ("/api/v1/agent-types/{agent_type_id}/inspect", "get", {"200", "401", "404", "429", "503"}),
        ("/api/v1/agent-types/{agent_type_id}/playground/runs", "post",
         {"201", "400", "401", "403", "404", "409", "413", "429", "503"}),
        ("/api/v1/agent-templates/resolve", "post", {"200", "400", "401", "413", "429", "503"}),
        ("/api/v1/platform-ops", "get", {"200", "400", "401", "404", "429", "503"}),
        ("/api/v1/capabilities/find", "post", {"200", "400", "401", "413", "429", "503"}),
    ]:
        assert set(paths[path][method]["responses"]) == statuses, (path, method)  # 503: also a lost dependency


def test_run_query_count_does_not_grow_with_the_kit(owner_client, project, agent_type, commit, template):
    """Static embeds cost no query: a kit-on run costs what a kit-off run does."""
    commit(agent_type, template)
    owner_client.get(revisions_url(agent_type.pk))  # the token cached
    counts = {}
    for build_kit in (False, True):
        with CaptureQueriesContext(connection) as queries:
            response = owner_client.post(runs_url(agent_type.pk), {"project_id": str(project.pk),
                                                                   "build_kit": build_kit}, format="json")
        assert response.status_code == 201
        counts[build_kit] = len(queries)
    # 12 for the run and its spawn (2 of them the agent counters' upserts, 1 the spawn's agent.transitioned event),
    # 1 for the PlaygroundRun row, 2 for the savepoint around spawn + row
    assert counts[True] == counts[False] == 15, counts


def test_huge_version_numbers_are_404_not_500(owner_client, agent_type, commit, template):
    commit(agent_type, template)
    response = owner_client.get(f"{revisions_url(agent_type.pk)}/{10 ** 30}")
    assert response.status_code == 404
    response = owner_client.post(RESOLVE, {"reference": {"slug": agent_type.slug, "version": 10 ** 30}},
                                 format="json")
    assert response.status_code == 400 and codes(response) == ["embed_not_found"]


def test_nul_in_a_template_is_400_not_500(staff_client, agent_type):
    template = {"llm": {"model": "m"}, "instructions": {"agents_md": "a\u0000b"}}
    response = staff_client.post(revisions_url(agent_type.pk), {"template": template}, format="json")
    assert response.status_code == 400 and fields(response) == ["template"]


def test_resolve_refuses_deeply_nested_input(owner_client):
    deep: dict = {}
    node = deep
    for _ in range(300):
        node["a"] = {}
        node = node["a"]
    response = owner_client.post(RESOLVE, {"template": deep}, format="json")
    assert response.status_code == 400 and fields(response) == ["template"]


# --- JSON documents PostgreSQL cannot store are 400, never 500 --------------------------------

NUL_EMBED = {"tools": [{"@ag.embed": {"@ag.references": {"workflow": {"slug": "a\u0000b"}}}}]}


def test_resolve_refuses_a_nul_in_an_embed_slug(owner_client):
    response = owner_client.post(RESOLVE, {"template": NUL_EMBED}, format="json")
    assert response.status_code == 400, response.content
    assert codes(response) == ["nul_character"] and fields(response) == ["template"]


def test_resolve_refuses_a_nul_in_a_reference(owner_client):
    response = owner_client.post(RESOLVE, {"reference": {"slug": "__sx__build_kit", "version": "1\u0000"}},
                                 format="json")
    assert response.status_code == 400, response.content
    assert codes(response) == ["nul_character"] and fields(response) == ["reference"]


@pytest.mark.parametrize(
    ("value", "code"),
    [({"model": "a\u0000b"}, "nul_character"), ({"a\u0000": 1}, "nul_character")],
)
def test_run_refuses_a_config_postgres_cannot_store(owner_client, project, agent_type, template, value, code):
    response = owner_client.post(runs_url(agent_type.pk),
                                 {"project_id": str(project.pk), "template": template, "config": value}, format="json")
    assert response.status_code == 400, response.content
    assert codes(response) == [code] and fields(response) == ["config"]
    assert not AgentInstance.objects.exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_run_service_refuses_nan_and_infinity_in_config(project, agent_type, template, value):
    """The JSON parser already refuses NaN; callers of the service (the admin) are checked too."""
    from syndarix.exceptions import InvalidInput

    with pytest.raises(InvalidInput) as info:
        services.playground_run(agent_type=agent_type, project=project, template=template, config={"retries": value})
    assert (info.value.code, info.value.field) == ("invalid_data", "config")
    assert not AgentInstance.objects.exists()


def test_resolve_service_refuses_nan_in_a_template():
    from syndarix.exceptions import InvalidInput

    with pytest.raises(InvalidInput) as info:
        services.template_resolve(template={"a": float("nan")})
    assert (info.value.code, info.value.field) == ("invalid_data", "template")


def test_run_refuses_a_nul_in_an_embed_slug(owner_client, project, agent_type):
    template = {"llm": {"model": "m"}, **NUL_EMBED}
    response = owner_client.post(runs_url(agent_type.pk), {"project_id": str(project.pk), "template": template},
                                 format="json")
    assert response.status_code == 400, response.content
    assert codes(response) == ["nul_character"]
    assert not AgentInstance.objects.exists()


def test_a_replay_is_one_query_after_the_request_checks(owner_client, project, agent_type, commit, template):
    commit(agent_type, template)
    body = {"project_id": str(project.pk)}
    assert owner_client.post(runs_url(agent_type.pk), body, format="json", HTTP_IDEMPOTENCY_KEY="q").status_code == 201
    with CaptureQueriesContext(connection) as queries:
        response = owner_client.post(runs_url(agent_type.pk), body, format="json", HTTP_IDEMPOTENCY_KEY="q")
    assert response.json()["replayed"] is True and response.json()["revision"] == 1
    # the agent type, the project, then the run with its agent and revision (no validation, no spawn; the token is
    # in the cache since the first request)
    assert len(queries) == 3, [q["sql"] for q in queries.captured_queries]
