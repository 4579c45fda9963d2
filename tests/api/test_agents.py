"""The agent API: spawn, list, metrics, get, update, pause, resume, terminate, usage, ledger."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from agents import services
from agents.choices import AgentStatus as S
from agents.models import TRANSITIONS, AgentInstance, AgentTransition
from tests import factories
from tests.conftest import client_for
from tests.factories import agent_in_status

from .conftest import agents_url, codes, fields

pytestmark = pytest.mark.django_db

REPRESENTATION = {
    "id", "project_id", "project_name", "project_slug", "agent_type_id", "agent_type_name", "agent_type_slug",
    "name", "status", "allowed_transitions", "current_task", "short_term_memory", "long_term_memory_ref",
    "session_id", "config", "is_playground", "last_activity_at", "last_heartbeat_at", "last_error",
    "terminated_at", "termination_reason", "tasks_completed", "tokens_used", "cost_incurred",
    "assigned_issues_count", "created_at", "updated_at", "agent_type_revision_id", "agent_type_revision_version",
    "effective_template", "max_tokens", "max_cost_usd",
}  # fmt: skip

#: (method, suffix, body) of every route that names one agent.
AGENT_ROUTES = [
    ("get", "", None),
    ("patch", "", {"name": "x"}),
    ("delete", "", None),
    ("post", "pause", {}),
    ("post", "resume", {}),
    ("get", "metrics", None),
    ("post", "usage", {"tokens": 1}),
    ("get", "transitions", None),
]
AGENT_WRITES = [route for route in AGENT_ROUTES if route[0] != "get"]


def ledger(agent) -> list[tuple[str, str]]:
    return list(
        AgentTransition.objects.filter(agent=agent).order_by("created_at").values_list("from_status", "to_status")
    )


def call(client, method, url, body=None, **extra):
    return (
        getattr(client, method)(url, body, format="json", **extra)
        if body is not None
        else getattr(client, method)(url, **extra)
    )


# --- spawn ---------------------------------------------------------------------------------------


def test_spawn_creates_an_idle_agent_with_its_representation(owner_client, project, agent_type, user):
    response = owner_client.post(
        agents_url(project),
        {"agent_type_id": str(agent_type.pk), "name": "builder", "config": {"retries": 2}, "current_task": "plan"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == REPRESENTATION
    assert body["status"] == "idle"
    assert body["allowed_transitions"] == TRANSITIONS["idle"]
    assert (body["project_id"], body["project_slug"]) == (str(project.pk), project.slug)
    assert (body["agent_type_name"], body["agent_type_slug"]) == (agent_type.name, agent_type.slug)
    assert body["config"] == {"retries": 2} and body["current_task"] == "plan"
    assert body["cost_incurred"] == "0.000000" and body["assigned_issues_count"] == 0
    agent = AgentInstance.objects.get(pk=body["id"])
    assert ledger(agent) == [("", "idle")]
    assert agent.transitions.get().actor == user
    assert (body["agent_type_revision_id"], body["effective_template"]) == (None, None)


def test_spawn_records_the_latest_committed_template(owner_client, project, agent_type, user):
    template = {"instructions": {"agents_md": "v2"}, "tools": []}
    services.agent_type_commit_revision(agent_type, template={"tools": []}, message="one", author=user)
    revision = services.agent_type_commit_revision(agent_type, template=template, message="two", author=user)
    body = owner_client.post(agents_url(project), {"agent_type_id": str(agent_type.pk), "name": "b"}).json()
    assert (body["agent_type_revision_id"], body["agent_type_revision_version"]) == (str(revision.pk), 2)
    assert body["effective_template"] == template


def test_spawn_accepts_a_matching_project_id(owner_client, project, agent_type):
    body = {"agent_type_id": str(agent_type.pk), "name": "a", "project_id": str(project.pk)}
    assert owner_client.post(agents_url(project), body, format="json").status_code == 201


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"name": "a"}, "agent_type_id", "required"),
        ({"agent_type_id": "nope", "name": "a"}, "agent_type_id", "invalid"),
        ({"agent_type_id": "TYPE"}, "name", "required"),
        ({"agent_type_id": "TYPE", "name": ""}, "name", "blank"),
        ({"agent_type_id": "TYPE", "name": "a", "config": []}, "config", "not_a_dict"),
        ({"agent_type_id": "TYPE", "name": "a", "config": {"retries": -1}}, "config.retries", "invalid"),
        ({"agent_type_id": "TYPE", "name": "a", "config": {"colour": "red"}}, "config", "invalid"),
        ({"agent_type_id": "TYPE", "name": "a", "project_id": str(uuid.uuid4())}, "project_id", "mismatch"),
    ],
)
def test_spawn_rejects_bad_input_per_field(owner_client, project, agent_type, body, field, code):
    body = {k: str(agent_type.pk) if v == "TYPE" else v for k, v in body.items()}
    response = owner_client.post(agents_url(project), body, format="json")
    assert response.status_code == 400
    assert fields(response) == {field: code}
    assert not AgentInstance.objects.exists()


def test_spawn_of_an_inactive_type_is_400(owner_client, project):
    inactive = factories.AgentTypeFactory(is_active=False)
    response = owner_client.post(agents_url(project), {"agent_type_id": str(inactive.pk), "name": "a"}, format="json")
    assert response.status_code == 400
    assert fields(response) == {"agent_type_id": "validation_error"}
    assert "inactive" in response.json()["errors"][0]["message"]


def test_spawn_of_an_unknown_type_is_404(owner_client, project):
    unknown = uuid.uuid4()
    response = owner_client.post(agents_url(project), {"agent_type_id": str(unknown), "name": "a"}, format="json")
    assert response.status_code == 404
    assert response.json()["errors"][0] == {
        "code": "not_found",
        "message": f"Agent type {unknown} not found.",
        "field": "agent_type_id",
    }


def test_spawn_over_the_workspace_limit_is_409(owner_client, project, agent_type, workspace):
    workspace.max_concurrent_agents = 1
    workspace.save(update_fields=["max_concurrent_agents"])
    factories.AgentFactory(project=project, agent_type=agent_type)
    response = owner_client.post(agents_url(project), {"agent_type_id": str(agent_type.pk), "name": "b"}, format="json")
    assert response.status_code == 409
    error = response.json()["errors"][0]
    assert (error["code"], error["limit"], error["current"]) == ("concurrency_limit", 1, 1)


def test_spawn_when_agents_are_disabled_is_503(owner_client, project, agent_type, settings):
    settings.AGENTS_ENABLED = False
    response = owner_client.post(agents_url(project), {"agent_type_id": str(agent_type.pk), "name": "a"}, format="json")
    assert response.status_code == 503
    assert codes(response) == ["agents_disabled"] and response["Retry-After"]


def test_spawn_replay_with_the_same_idempotency_key_returns_the_first_agent(owner_client, project, agent_type):
    body = {"agent_type_id": str(agent_type.pk), "name": "once"}
    first = owner_client.post(agents_url(project), body, format="json", HTTP_IDEMPOTENCY_KEY="spawn-1")
    again = owner_client.post(agents_url(project), body, format="json", HTTP_IDEMPOTENCY_KEY="spawn-1")
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert AgentInstance.objects.count() == 1
    assert AgentTransition.objects.count() == 1
    other = owner_client.post(agents_url(project), body, format="json", HTTP_IDEMPOTENCY_KEY="spawn-2")
    assert other.json()["id"] != first.json()["id"]


def test_an_overlong_idempotency_key_is_400(owner_client, project, agent_type):
    body = {"agent_type_id": str(agent_type.pk), "name": "a"}
    response = owner_client.post(agents_url(project), body, format="json", HTTP_IDEMPOTENCY_KEY="k" * 201)
    assert response.status_code == 400
    assert fields(response) == {"Idempotency-Key": "validation_error"}


# --- list ----------------------------------------------------------------------------------------


def test_list_is_paginated_with_metadata(owner_client, project, agent_type):
    for _ in range(5):
        factories.AgentFactory(project=project, agent_type=agent_type)
    response = owner_client.get(agents_url(project), {"limit": 2, "page": 2})
    assert response.status_code == 200
    body = response.json()
    assert len(body["data"]) == 2
    assert body["pagination"] == {
        "total": 5,
        "total_exact": True,
        "page": 2,
        "page_size": 2,
        "total_pages": 3,
        "has_next": True,
        "has_prev": True,
        "next_cursor": body["pagination"]["next_cursor"],
    }
    assert body["pagination"]["next_cursor"]
    assert set(body["data"][0]) == REPRESENTATION
    assert owner_client.get(agents_url(project), {"limit": 500}).json()["pagination"]["page_size"] == 100
    assert owner_client.get(agents_url(project), {"page": 9}).status_code == 404


def test_list_is_newest_first_and_only_this_project(owner_client, project, agent_type, user):
    names = [factories.AgentFactory(project=project, agent_type=agent_type, name=f"a{i}").name for i in range(3)]
    factories.AgentFactory(project=factories.ProjectFactory(workspace=project.workspace, owner=user))
    data = owner_client.get(agents_url(project)).json()["data"]
    assert [a["name"] for a in data] == names[::-1]


def test_list_filters(owner_client, project, agent_type):
    other_type = factories.AgentTypeFactory(slug="reviewer")
    idle = factories.AgentFactory(project=project, agent_type=agent_type, name="alpha builder")
    paused = agent_in_status(S.PAUSED, project=project, agent_type=agent_type, name="beta")
    working = agent_in_status(S.WORKING, project=project, agent_type=other_type, name="gamma builder")
    services.agent_record_usage(paused, tokens=50)
    services.agent_record_usage(working, tokens=10)

    def ids(**params):
        response = owner_client.get(agents_url(project), params)
        assert response.status_code == 200, response.json()
        return [a["id"] for a in response.json()["data"]]

    assert set(ids(status=["idle", "paused"])) == {str(idle.pk), str(paused.pk)}
    assert ids(status="working") == [str(working.pk)]
    assert ids(agent_type="reviewer") == [str(working.pk)]
    assert set(ids(agent_type=str(agent_type.pk))) == {str(idle.pk), str(paused.pk)}
    assert set(ids(q="BUILDER")) == {str(idle.pk), str(working.pk)}
    assert ids(ordering="name") == [str(idle.pk), str(paused.pk), str(working.pk)]
    assert ids(ordering="-tokens_used") == [str(paused.pk), str(working.pk), str(idle.pk)]
    assert ids(ordering="created_at")[0] == str(idle.pk)


@pytest.mark.parametrize(("params", "field"), [({"status": "asleep"}, "status"), ({"ordering": "cost"}, "ordering")])
def test_list_rejects_unknown_filter_values(owner_client, project, params, field):
    response = owner_client.get(agents_url(project), params)
    assert response.status_code == 400
    assert list(fields(response)) == [field]


def test_playground_agents_are_left_out_unless_asked(owner_client, project, agent_type):
    regular = factories.AgentFactory(project=project, agent_type=agent_type)
    playground = factories.AgentFactory(project=project, agent_type=agent_type, is_playground=True)
    services.agent_record_usage(playground, tokens=7)
    default = [a["id"] for a in owner_client.get(agents_url(project)).json()["data"]]
    assert default == [str(regular.pk)]
    included = owner_client.get(agents_url(project), {"include_playground": "true"}).json()["data"]
    assert {a["id"] for a in included} == {str(regular.pk), str(playground.pk)}
    metrics = owner_client.get(agents_url(project, suffix="metrics")).json()
    assert (metrics["total_instances"], metrics["total_tokens_used"]) == (1, 0)
    metrics = owner_client.get(agents_url(project, suffix="metrics"), {"include_playground": "true"}).json()
    assert (metrics["total_instances"], metrics["total_tokens_used"]) == (2, 7)
    # A playground agent is still reachable by id.
    assert owner_client.get(agents_url(project, playground)).status_code == 200


def test_list_query_count_is_the_same_for_1_and_50_agents(owner_client, project, agent_type, django_assert_num_queries):
    """One query whatever the page size: the page with its joins, its issue counts and the list's total from the
    project's counters (subqueries, no N+1), the token and the project access read from the cache after the first
    request (which reads each with one query more)."""
    agent = factories.AgentFactory(project=project, agent_type=agent_type)
    factories.IssueFactory(project=project, assigned_agent=agent)
    with django_assert_num_queries(3):
        owner_client.get(agents_url(project), {"limit": 100})
    with django_assert_num_queries(1):
        response = owner_client.get(agents_url(project), {"limit": 100})
    assert len(response.json()["data"]) == 1
    assert response.json()["data"][0]["assigned_issues_count"] == 1
    for i in range(49):
        other = factories.AgentFactory(
            project=project, agent_type=factories.AgentTypeFactory() if i % 2 else agent_type
        )
        factories.IssueFactory(project=project, assigned_agent=other)
    with django_assert_num_queries(1):
        response = owner_client.get(agents_url(project), {"limit": 100})
    assert len(response.json()["data"]) == 50
    assert {a["assigned_issues_count"] for a in response.json()["data"]} == {1}


# --- metrics -------------------------------------------------------------------------------------


def test_project_metrics_count_by_status_and_sum_usage(owner_client, project, agent_type, django_assert_num_queries):
    for status in (S.IDLE, S.IDLE, S.WORKING, S.WAITING, S.PAUSED, S.TERMINATED):
        agent = agent_in_status(status, project=project, agent_type=agent_type)
    services.agent_record_usage(
        AgentInstance.objects.filter(project=project, status=S.WORKING).get(),
        tokens=100,
        cost="0.25",
        tasks_completed=2,
    )
    services.agent_record_usage(
        AgentInstance.objects.filter(project=project, status=S.PAUSED).get(), tokens=5, cost="1.000001"
    )
    factories.AgentFactory()  # another workspace: not counted
    assert agent.status == S.TERMINATED
    with django_assert_num_queries(3):  # token, project, one aggregate
        response = owner_client.get(agents_url(project, suffix="metrics"))
    assert response.status_code == 200
    assert response.json() == {
        "total_instances": 6,
        "active_instances": 1,
        "idle_instances": 2,
        "waiting_instances": 1,
        "paused_instances": 1,
        "terminated_instances": 1,
        "total_tasks_completed": 2,
        "total_tokens_used": 105,
        "total_cost_incurred": "1.250001",
        "total_unpriced_tokens": 0,
    }


def test_project_metrics_of_an_empty_project_are_zero(owner_client, project):
    body = owner_client.get(agents_url(project, suffix="metrics")).json()
    assert body["total_instances"] == 0 and body["total_cost_incurred"] == "0.000000"


def test_agent_metrics_have_the_project_shape_for_one_agent(owner_client, project, agent_type):
    agent = agent_in_status(S.WORKING, project=project, agent_type=agent_type)
    services.agent_record_usage(agent, tokens=42, cost="0.5", tasks_completed=3)
    factories.AgentFactory(project=project, agent_type=agent_type)
    response = owner_client.get(agents_url(project, agent, "metrics"))
    assert response.status_code == 200
    assert response.json() == {
        "total_instances": 1,
        "active_instances": 1,
        "idle_instances": 0,
        "waiting_instances": 0,
        "paused_instances": 0,
        "terminated_instances": 0,
        "total_tasks_completed": 3,
        "total_tokens_used": 42,
        "total_cost_incurred": "0.500000",
        "total_unpriced_tokens": 0,
    }


# --- get -----------------------------------------------------------------------------------------


def test_get_an_agent(owner_client, project, agent):
    factories.IssueFactory(project=project, assigned_agent=agent)
    response = owner_client.get(agents_url(project, agent))
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(agent.pk) and body["assigned_issues_count"] == 1


def test_agent_of_another_project_in_reach_is_404(owner_client, project, user, agent_type):
    sibling = factories.ProjectFactory(workspace=project.workspace, owner=user)
    elsewhere = factories.AgentFactory(project=sibling, agent_type=agent_type)
    response = owner_client.get(agents_url(project, elsewhere))
    assert response.status_code == 404
    assert codes(response) == ["not_found"]


def test_unknown_agent_is_404(owner_client, project):
    assert owner_client.get(agents_url(project, uuid.uuid4())).status_code == 404


# --- update --------------------------------------------------------------------------------------


def test_patch_changes_editable_fields(owner_client, project, agent):
    body = {
        "name": "renamed",
        "current_task": "write tests",
        "short_term_memory": {"notes": ["a"]},
        "long_term_memory_ref": "s3://bucket/agent",
        "session_id": "sess-1",
        "config": {"retries": 3, "model": "m"},
    }
    response = owner_client.patch(agents_url(project, agent), body, format="json")
    assert response.status_code == 200, response.json()
    assert {k: response.json()[k] for k in body} == body
    agent.refresh_from_db()
    assert (agent.name, agent.session_id, agent.config) == ("renamed", "sess-1", {"retries": 3, "model": "m"})
    assert ledger(agent) == [("", "idle")]  # no status change, no ledger row


def test_patch_sets_and_clears_the_budget(owner_client, project, agent):
    response = owner_client.patch(agents_url(project, agent), {"max_tokens": 5000, "max_cost_usd": "1.5"},
                                  format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["max_tokens"], response.json()["max_cost_usd"]) == (5000, "1.500000")
    agent.refresh_from_db()
    assert agent.budget == (5000, Decimal("1.5"))
    cleared = owner_client.patch(agents_url(project, agent), {"max_tokens": None}, format="json").json()
    assert cleared["max_tokens"] is None and cleared["max_cost_usd"] == "1.500000"


def test_read_only_fields_sent_in_patch_stay_unchanged(owner_client, project, agent):
    services.agent_record_usage(agent, tokens=10, cost="0.1", tasks_completed=1)
    before = owner_client.get(agents_url(project, agent)).json()
    attack = {
        "id": str(uuid.uuid4()),
        "project_id": str(factories.ProjectFactory().pk),
        "agent_type_id": str(factories.AgentTypeFactory().pk),
        "tokens_used": 999999,
        "cost_incurred": "123.45",
        "tasks_completed": 77,
        "is_playground": True,
        "terminated_at": "2030-01-01T00:00:00Z",
        "termination_reason": "budget",
        "last_error": "boom",
        "created_at": "2000-01-01T00:00:00Z",
        "allowed_transitions": [],
        "assigned_issues_count": 9,
        "name": "allowed",
    }
    response = owner_client.patch(agents_url(project, agent), attack, format="json")
    assert response.status_code == 200
    after = owner_client.get(agents_url(project, agent)).json()
    changed = {k for k in REPRESENTATION if before[k] != after[k]}
    assert changed == {"name", "updated_at"}
    assert (after["tokens_used"], after["cost_incurred"], after["tasks_completed"]) == (10, "0.100000", 1)


def test_patch_status_goes_through_the_guard(owner_client, project, agent):
    response = owner_client.patch(agents_url(project, agent), {"status": "working"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "working"
    assert response.json()["allowed_transitions"] == TRANSITIONS["working"]
    assert ledger(agent)[-1] == ("idle", "working")


def test_patch_illegal_status_is_409_and_changes_nothing(owner_client, project, agent_type):
    agent = agent_in_status(S.PAUSED, project=project, agent_type=agent_type)
    response = owner_client.patch(agents_url(project, agent), {"status": "working", "name": "x"}, format="json")
    assert response.status_code == 409
    error = response.json()["errors"][0]
    assert error == {
        "code": "invalid_transition",
        "message": "Cannot transition agent from 'paused' to 'working'.",
        "field": "status",
        "current_status": "paused",
        "requested_status": "working",
        "allowed_transitions": ["idle", "terminated"],
    }
    unchanged = AgentInstance.objects.get(pk=agent.pk)
    assert (unchanged.status, unchanged.name) == (S.PAUSED, agent.name)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "asleep"}, "status"),
        ({"config": {"retries": "many"}}, "config.retries"),
        ({"short_term_memory": "text"}, "short_term_memory"),
        ({"name": ""}, "name"),
        ({"session_id": "s" * 201}, "session_id"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_cost_usd": "-0.5"}, "max_cost_usd"),
        ({"max_cost_usd": "lots"}, "max_cost_usd"),
    ],
)
def test_patch_rejects_bad_input(owner_client, project, agent, body, field):
    response = owner_client.patch(agents_url(project, agent), body, format="json")
    assert response.status_code == 400
    assert list(fields(response)) == [field]


def test_patch_of_a_terminated_agent_is_409(owner_client, project, agent_type):
    agent = agent_in_status(S.TERMINATED, project=project, agent_type=agent_type)
    response = owner_client.patch(agents_url(project, agent), {"name": "zombie"}, format="json")
    assert response.status_code == 409
    assert codes(response) == ["agent_terminated"]


def test_patch_status_replay_writes_one_ledger_row(owner_client, project, agent):
    url = agents_url(project, agent)
    first = owner_client.patch(url, {"status": "working"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = owner_client.patch(url, {"status": "working"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == again.status_code == 200
    assert first.json()["status"] == again.json()["status"] == "working"
    assert ledger(agent) == [("", "idle"), ("idle", "working")]
    assert AgentTransition.objects.get(agent=agent, to_status="working").request_id == "k1"


def test_a_replayed_field_only_patch_changes_nothing(owner_client, project, agent):
    url = agents_url(project, agent)
    first = owner_client.patch(url, {"name": "first", "current_task": "t1"}, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    assert first.status_code == 200 and first.json()["name"] == "first"
    assert owner_client.patch(url, {"name": "meanwhile"}, format="json").status_code == 200
    again = owner_client.patch(url, {"name": "first", "current_task": "t1"}, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    assert again.status_code == 200
    assert (again.json()["name"], again.json()["current_task"]) == ("meanwhile", "t1")
    assert AgentInstance.objects.get(pk=agent.pk).name == "meanwhile"
    assert ledger(agent) == [("", "idle"), ("idle", "idle")]
    note = AgentTransition.objects.get(agent=agent, request_id="k2")
    assert (note.reason, note.actor_id) == ("updated", project.owner_id)


def test_a_replayed_patch_with_a_status_changes_nothing(owner_client, project, agent):
    url = agents_url(project, agent)
    body = {"status": "working", "name": "first"}
    assert owner_client.patch(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k3").json()["status"] == "working"
    assert owner_client.post(agents_url(project, agent, "pause")).json()["status"] == "paused"
    assert owner_client.patch(url, {"name": "meanwhile"}, format="json").status_code == 200
    again = owner_client.patch(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k3")
    assert again.status_code == 200
    assert (again.json()["status"], again.json()["name"]) == ("paused", "meanwhile")
    assert ledger(agent) == [("", "idle"), ("idle", "working"), ("working", "paused")]


# --- pause, resume -------------------------------------------------------------------------------


def test_pause_and_resume(owner_client, project, agent, user):
    response = owner_client.post(agents_url(project, agent, "pause"), {"reason": "lunch"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "paused"
    assert response.json()["allowed_transitions"] == ["idle", "terminated"]
    row = AgentTransition.objects.get(agent=agent, to_status="paused")
    assert (row.reason, row.actor) == ("lunch", user)
    response = owner_client.post(agents_url(project, agent, "resume"))
    assert response.status_code == 200
    assert response.json()["status"] == "idle"
    assert ledger(agent) == [("", "idle"), ("idle", "paused"), ("paused", "idle")]


def test_pause_of_a_paused_agent_and_resume_of_an_idle_one_are_no_ops(owner_client, project, agent_type):
    paused = agent_in_status(S.PAUSED, project=project, agent_type=agent_type)
    idle = agent_in_status(S.IDLE, project=project, agent_type=agent_type)
    assert owner_client.post(agents_url(project, paused, "pause")).json()["status"] == "paused"
    assert owner_client.post(agents_url(project, idle, "resume")).json()["status"] == "idle"
    assert len(ledger(paused)) == 2 and len(ledger(idle)) == 1


@pytest.mark.parametrize(
    ("status", "verb", "code"),
    [
        (S.WORKING, "resume", "invalid_transition"),
        (S.TERMINATED, "resume", "invalid_transition"),
        (S.TERMINATED, "pause", "invalid_transition"),
    ],
)
def test_illegal_pause_or_resume_is_409(owner_client, project, agent_type, status, verb, code):
    agent = agent_in_status(status, project=project, agent_type=agent_type)
    response = owner_client.post(agents_url(project, agent, verb))
    assert response.status_code == 409
    assert codes(response) == [code]
    assert response.json()["errors"][0]["current_status"] == status
    assert AgentInstance.objects.get(pk=agent.pk).status == status


def test_pause_replay_returns_without_acting_twice(owner_client, project, agent):
    url = agents_url(project, agent, "pause")
    assert owner_client.post(url, HTTP_IDEMPOTENCY_KEY="p1").json()["status"] == "paused"
    owner_client.post(agents_url(project, agent, "resume"))
    replay = owner_client.post(url, HTTP_IDEMPOTENCY_KEY="p1")
    assert replay.status_code == 200
    assert replay.json()["status"] == "idle"  # the key was spent: nothing paused the agent again
    assert ledger(agent) == [("", "idle"), ("idle", "paused"), ("paused", "idle")]


def test_pause_reason_too_long_is_400(owner_client, project, agent):
    response = owner_client.post(agents_url(project, agent, "pause"), {"reason": "r" * 1001}, format="json")
    assert response.status_code == 400
    assert fields(response) == {"reason": "max_length"}


# --- terminate -----------------------------------------------------------------------------------


def test_terminate_answers_the_seed_message(owner_client, project, agent_type):
    agent = agent_in_status(S.WORKING, project=project, agent_type=agent_type, name="Ada")
    services.agent_update(agent, data={"session_id": "s", "current_task": "t"})
    response = owner_client.delete(agents_url(project, agent))
    assert response.status_code == 200
    assert response.json() == {"success": True, "message": "Agent 'Ada' has been terminated"}
    agent.refresh_from_db()
    assert agent.status == S.TERMINATED and agent.terminated_at is not None
    assert (agent.session_id, agent.current_task, agent.termination_reason) == ("", "", "user")


def test_terminate_takes_reasons_from_the_body_or_the_query(owner_client, project, agent_type):
    first = factories.AgentFactory(project=project, agent_type=agent_type)
    second = factories.AgentFactory(project=project, agent_type=agent_type)
    body = {"reason": "over budget", "termination_reason": "budget"}
    assert owner_client.delete(agents_url(project, first), body, format="json").status_code == 200
    assert (
        owner_client.delete(agents_url(project, second) + "?reason=done&termination_reason=superseded").status_code
        == 200
    )
    for agent, reason, why in ((first, "over budget", "budget"), (second, "done", "superseded")):
        agent.refresh_from_db()
        assert agent.termination_reason == why
        assert agent.transitions.get(to_status="terminated").reason == reason


def test_terminate_with_an_unknown_termination_reason_is_400(owner_client, project, agent):
    response = owner_client.delete(agents_url(project, agent) + "?termination_reason=bored")
    assert response.status_code == 400
    assert fields(response) == {"termination_reason": "invalid_choice"}
    assert AgentInstance.objects.get(pk=agent.pk).status == S.IDLE


def test_terminating_twice_is_409_already_terminated(owner_client, project, agent):
    assert owner_client.delete(agents_url(project, agent)).status_code == 200
    response = owner_client.delete(agents_url(project, agent))
    assert response.status_code == 409
    assert codes(response) == ["already_terminated"]


def test_terminate_replay_returns_the_original_answer(owner_client, project, agent):
    first = owner_client.delete(agents_url(project, agent), HTTP_IDEMPOTENCY_KEY="t1")
    again = owner_client.delete(agents_url(project, agent), HTTP_IDEMPOTENCY_KEY="t1")
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert ledger(agent) == [("", "idle"), ("idle", "terminated")]


# --- usage ---------------------------------------------------------------------------------------


def test_usage_increments_the_counters(owner_client, project, agent):
    url = agents_url(project, agent, "usage")
    owner_client.post(url, {"tokens": 100, "cost": "0.125", "tasks_completed": 1}, format="json")
    response = owner_client.post(url, {"tokens": 5, "cost": "0.000001"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["tokens_used"], body["cost_incurred"], body["tasks_completed"]) == (105, "0.125001", 1)
    agent.refresh_from_db()
    assert agent.cost_incurred == Decimal("0.125001")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tokens": -1}, "tokens"),
        ({"cost": "-0.01"}, "cost"),
        ({"cost": "lots"}, "cost"),
        ({"tasks_completed": -2}, "tasks_completed"),
        ({"tokens": 10**13}, "tokens"),
    ],
)
def test_usage_rejects_negative_or_bad_values(owner_client, project, agent, body, field):
    response = owner_client.post(agents_url(project, agent, "usage"), body, format="json")
    assert response.status_code == 400
    assert list(fields(response)) == [field]
    agent.refresh_from_db()
    assert (agent.tokens_used, agent.cost_incurred) == (0, Decimal("0"))


def test_usage_on_a_terminated_agent_is_409(owner_client, project, agent_type):
    agent = agent_in_status(S.TERMINATED, project=project, agent_type=agent_type)
    response = owner_client.post(agents_url(project, agent, "usage"), {"tokens": 1}, format="json")
    assert response.status_code == 409
    assert codes(response) == ["agent_terminated"]


# --- ledger --------------------------------------------------------------------------------------


def test_transitions_are_newest_first_and_paginated(owner_client, project, agent, user):
    for verb in ("pause", "resume", "pause"):
        owner_client.post(agents_url(project, agent, verb))
    response = owner_client.get(agents_url(project, agent, "transitions"), {"limit": 3})
    assert response.status_code == 200
    body = response.json()
    assert [(r["from_status"], r["to_status"]) for r in body["data"]] == [
        ("idle", "paused"),
        ("paused", "idle"),
        ("idle", "paused"),
    ][::-1]
    assert body["pagination"]["total"] == 4 and body["pagination"]["has_next"] is True
    assert body["data"][0]["actor_username"] == user.username
    last = owner_client.get(agents_url(project, agent, "transitions"), {"limit": 3, "page": 2}).json()["data"]
    assert [(r["from_status"], r["to_status"], r["actor_id"]) for r in last] == [("", "idle", None)]


# --- access --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "suffix", "body"), AGENT_ROUTES)
def test_another_workspaces_agent_is_404_on_every_route(stranger_client, project, agent, method, suffix, body):
    """Through its own project's URL, and through the stranger's project with the victim's agent id."""
    before = ledger(agent)
    response = call(stranger_client, method, agents_url(project, agent, suffix), body)
    assert response.status_code == 404, response.json()
    assert codes(response) == ["not_found"]
    stranger_project = factories.ProjectFactory()
    stranger = client_for(stranger_project.owner)
    response = call(stranger, method, agents_url(stranger_project, agent, suffix), body)
    assert response.status_code == 404
    assert ledger(agent) == before
    assert AgentInstance.objects.get(pk=agent.pk).name == agent.name


@pytest.mark.parametrize(("method", "suffix"), [("get", ""), ("post", ""), ("get", "metrics")])
def test_another_workspaces_project_is_404_for_its_collection(stranger_client, project, agent_type, method, suffix):
    body = {"agent_type_id": str(agent_type.pk), "name": "a"} if method == "post" else None
    response = call(stranger_client, method, agents_url(project, suffix=suffix), body)
    assert response.status_code == 404
    assert not AgentInstance.objects.filter(project=project).exists()


@pytest.mark.parametrize(("method", "suffix", "body"), AGENT_WRITES)
def test_viewer_writes_are_403(viewer_client, project, agent, method, suffix, body):
    response = call(viewer_client, method, agents_url(project, agent, suffix), body)
    assert response.status_code == 403
    assert codes(response) == ["permission_denied"]
    assert ledger(agent) == [("", "idle")]


def test_viewer_spawn_is_403_and_reads_are_allowed(viewer_client, project, agent, agent_type):
    body = {"agent_type_id": str(agent_type.pk), "name": "a"}
    assert viewer_client.post(agents_url(project), body, format="json").status_code == 403
    for url in (
        agents_url(project),
        agents_url(project, suffix="metrics"),
        agents_url(project, agent),
        agents_url(project, agent, "metrics"),
        agents_url(project, agent, "transitions"),
    ):
        assert viewer_client.get(url).status_code == 200, url


def test_operators_and_superusers_write(operator_client, superuser_client, project, agent_type):
    body = {"agent_type_id": str(agent_type.pk), "name": "a"}
    for client in (operator_client, superuser_client):
        created = client.post(agents_url(project), body, format="json")
        assert created.status_code == 201
        assert client.post(agents_url(project, created.json()["id"], "pause")).status_code == 200


@pytest.mark.parametrize(
    ("method", "suffix", "body"), [("get", None, None), ("post", None, {}), ("get", "metrics!", None), *AGENT_ROUTES]
)
def test_anonymous_is_401(api_client, project, agent, method, suffix, body):
    if suffix is None:
        url = agents_url(project)
    elif suffix == "metrics!":
        url = agents_url(project, suffix="metrics")
    else:
        url = agents_url(project, agent, suffix)
    response = call(api_client, method, url, body)
    assert response.status_code == 401
    assert codes(response) == ["not_authenticated"]
    assert response["WWW-Authenticate"] == "Token"


def test_a_bad_token_is_401(project):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    response = client.get(agents_url(project))
    assert response.status_code == 401
    assert codes(response) == ["authentication_failed"]
