"""Responses match the published schema, and malformed query strings are 400 as docs/api/filters.md promises (the
mismatches schemathesis found; `make fuzz` runs it over the whole API)."""

from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command

from agents.choices import AgentStatus as S
from agents.contexts import services as contexts
from tests.factories import agent_in_status

from .conftest import agents_url, codes, fields

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema(tmp_path_factory, django_db_blocker):
    path = tmp_path_factory.mktemp("schema") / "schema.yaml"
    with django_db_blocker.unblock():
        call_command("spectacular", "--file", str(path))
    return yaml.safe_load(path.read_text())


def component(schema, name):
    return schema["components"]["schemas"][name]


def allowed_values(schema, definition) -> set:
    """The values an enum property (``$ref``, ``allOf``/``oneOf`` of enums, ``nullable``) admits."""
    if "$ref" in definition:
        return allowed_values(schema, component(schema, definition["$ref"].rsplit("/", 1)[-1]))
    values = set(definition.get("enum", [])) | ({None} if definition.get("nullable") else set())
    for part in definition.get("allOf", []) + definition.get("oneOf", []):
        values |= allowed_values(schema, part)
    return values


def test_every_ledger_row_is_in_the_published_enums(schema, owner_client, project, agent):
    """The spawn row's ``from_status`` is ``""``: the schema's enum has it (generated clients refused the page)."""
    owner_client.post(agents_url(project, agent, "pause"), {}, format="json")
    rows = owner_client.get(agents_url(project, agent, "transitions")).json()["data"]
    properties = component(schema, "AgentTransition")["properties"]
    assert [row["from_status"] for row in rows] == ["idle", ""]
    for name in ("from_status", "to_status"):
        assert {row[name] for row in rows} <= allowed_values(schema, properties[name]), name


# --- pagination ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [({"page": 0}, "page"), ({"page": "-1"}, "page"), ({"page": "x"}, "page"), ({"page": ""}, "page"),
     ({"limit": 0}, "limit"), ({"limit": "1.5"}, "limit"), ({"limit": "false"}, "limit")],
)
def test_a_malformed_page_or_limit_is_400(owner_client, project, query, field):
    response = owner_client.get("/api/v1/projects", query)
    assert response.status_code == 400
    assert fields(response) == {field: "invalid"}


def test_a_page_past_the_end_is_404_and_a_large_limit_counts_as_100(owner_client, project):
    assert owner_client.get("/api/v1/projects", {"page": 2}).status_code == 404
    response = owner_client.get("/api/v1/projects", {"limit": 10**12})
    assert (response.status_code, response.json()["pagination"]["page_size"]) == (200, 100)


@pytest.mark.parametrize("path", ["/api/v1/projects", "/api/v1/workspaces", "/api/v1/agent-types"])
def test_a_page_beyond_any_count_is_404_not_an_overflow(owner_client, project, path):
    # page × limit past a 64-bit LIMIT: the count stops at its ceiling and the page is past the end.
    assert owner_client.get(path, {"page": 10**23, "limit": 10**25}).status_code == 404


def test_the_schema_says_pages_start_at_one_and_lists_may_be_404(schema):
    operation = schema["paths"]["/api/v1/projects"]["get"]
    parameters = {p["name"]: p["schema"] for p in operation["parameters"]}
    assert parameters["page"]["minimum"] == parameters["limit"]["minimum"] == 1
    assert {"400", "404"} <= set(operation["responses"])


# --- filters ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/agents", {"include_playground": "-4895"}, "include_playground"),
        ("/agents/metrics", {"include_playground": "maybe"}, "include_playground"),
        ("/agents", {"include_playground": ""}, "include_playground"),
        ("/agents/metrics", {"include_playground": ""}, "include_playground"),  # refused like the list's
        ("/agents", {"agent_type": ""}, None),  # free text (id or slug): empty is allowed
        ("/contexts", {"shared": "yes please"}, "shared"),
        ("/contexts", {"instance": ""}, "instance"),
        ("/issues", {"unassigned": "2"}, "unassigned"),
        ("/issues", {"assigned_agent": ""}, "assigned_agent"),
        ("/agents", {"ordering": ""}, None),  # the empty list
        ("/agents", {"ordering": "nope"}, "ordering"),
    ],
)
def test_filters_refuse_junk(owner_client, project, path, query, field):
    response = owner_client.get(f"/api/v1/projects/{project.pk}{path}", query)
    if field is None:
        assert response.status_code == 200
    else:
        assert response.status_code == 400, response.json()
        assert list(fields(response)) == [field]


def test_boolean_filters_take_true_and_false(owner_client, agent_type):
    for junk in ("junk", "", "-4895"):
        assert owner_client.get("/api/v1/agent-types", {"is_active": junk}).status_code == 400
    for value, count in (("true", 1), ("false", 0), ("1", 1), ("0", 0), ("True", 1)):
        response = owner_client.get("/api/v1/agent-types", {"is_active": value})
        assert (response.status_code, response.json()["pagination"]["total"]) == (200, count), value


def test_free_text_parameters_say_they_hold_no_nul(schema, owner_client):
    parameters = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/agent-types"]["get"]["parameters"]}
    assert parameters["q"]["pattern"] == "^[^\\u0000]*$"
    assert codes(owner_client.get("/api/v1/agent-types", {"q": "a\x00b"})) == ["null_characters_not_allowed"]


# --- response shapes -----------------------------------------------------------------------------


def test_a_live_agent_has_an_empty_termination_reason_the_schema_allows(schema, owner_client, project, agent):
    assert owner_client.get(agents_url(project, agent)).json()["termination_reason"] == ""
    terminated = agent_in_status(S.TERMINATED, project=project)
    assert owner_client.get(agents_url(project, terminated)).json()["termination_reason"] == "user"
    allowed = component(schema, "AgentInstance")["properties"]["termination_reason"]["oneOf"]
    assert {"$ref": "#/components/schemas/BlankEnum"} in allowed
    assert component(schema, "BlankEnum")["enum"] == [""]


def test_the_versions_list_documents_data_as_optional(schema, owner_client, project, user):
    context = contexts.context_create(project=project, name="plan", data={"goal": "ship"}, actor=user)
    url = f"/api/v1/projects/{project.pk}/contexts/{context.pk}/versions"
    assert "data" not in owner_client.get(url).json()["data"][0]
    assert owner_client.get(url, {"include_data": "true"}).json()["data"][0]["data"] == {"goal": "ship"}
    ref = schema["paths"]["/api/v1/projects/{project_id}/contexts/{context_id}/versions"]["get"]["responses"]["200"]
    page = component(schema, ref["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1])
    item = component(schema, page["properties"]["data"]["items"]["$ref"].rsplit("/", 1)[-1])
    assert "data" in item["properties"] and "data" not in item["required"]


def test_inspect_without_a_revision_says_null_as_documented(schema, owner_client, agent_type):
    response = owner_client.get(f"/api/v1/agent-types/{agent_type.pk}/inspect")
    assert response.status_code == 200 and response.json()["agent_type"]["revision"] is None
    assert component(schema, "InspectAgentType")["properties"]["revision"]["nullable"] is True


# --- unknown API paths ---------------------------------------------------------------------------


def test_unknown_api_paths_are_the_json_404_even_in_debug(owner_client, settings, project):
    settings.DEBUG = True
    for method, path in (("get", "/api/v1/projects/null,null"), ("delete", "/api/v1/nothing-here"),
                         ("post", f"/api/v1/projects/{project.pk}/agents/not-a-uuid/pause")):
        response = getattr(owner_client, method)(path)
        assert response.status_code == 404 and response["Content-Type"] == "application/json"
        assert codes(response) == ["not_found"]


def test_a_session_without_csrf_gets_the_json_404_not_an_html_403(client, superuser):
    client.force_login(superuser)
    client.cookies["csrftoken"] = "x" * 32
    response = client.post("/api/v1/projects/null,null")
    assert response.status_code == 404 and response.json()["errors"][0]["code"] == "not_found"


def test_a_foreign_tenant_is_still_404(stranger_client, project):
    assert stranger_client.get(f"/api/v1/projects/{project.pk}/agents", {"page": 1}).status_code == 404
