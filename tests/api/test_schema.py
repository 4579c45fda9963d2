"""The OpenAPI schema documents every endpoint with its error responses, and generates cleanly."""

from __future__ import annotations

import re

import pytest
import yaml
from django.core.management import call_command
from django.urls import URLResolver, get_resolver

pytestmark = pytest.mark.django_db

P = "/api/v1/projects/{project_id}"
A = P + "/agents/{agent_id}"
EXPECTED = {
    ("get", "/api/v1/"),
    ("post", "/api/v1/auth/token"),
    ("get", "/api/v1/workspaces"), ("post", "/api/v1/workspaces"),
    ("get", "/api/v1/workspaces/{workspace_id}"), ("patch", "/api/v1/workspaces/{workspace_id}"),
    ("delete", "/api/v1/workspaces/{workspace_id}"),
    ("get", "/api/v1/projects"), ("post", "/api/v1/projects"),
    ("get", P), ("patch", P), ("delete", P),
    ("get", P + "/issues"), ("post", P + "/issues"),
    ("get", P + "/issues/{issue_id}"), ("patch", P + "/issues/{issue_id}"), ("delete", P + "/issues/{issue_id}"),
    ("get", "/api/v1/agent-types"), ("post", "/api/v1/agent-types"),
    ("get", "/api/v1/agent-types/{agent_type_id}"), ("patch", "/api/v1/agent-types/{agent_type_id}"),
    ("delete", "/api/v1/agent-types/{agent_type_id}"),
    ("post", P + "/agents"), ("get", P + "/agents"), ("get", P + "/agents/metrics"),
    ("get", A), ("patch", A), ("delete", A),
    ("post", A + "/pause"), ("post", A + "/resume"),
    ("get", A + "/metrics"), ("post", A + "/usage"), ("get", A + "/transitions"),
}  # fmt: skip
PUBLIC = {("get", "/api/v1/"), ("post", "/api/v1/auth/token")}


@pytest.fixture(scope="module")
def schema(tmp_path_factory, django_db_blocker):
    path = tmp_path_factory.mktemp("schema") / "schema.yaml"
    with django_db_blocker.unblock():
        # Fails on any warning or validation error.
        call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    return yaml.safe_load(path.read_text())


def operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield method, path, operation


def test_every_endpoint_is_documented(schema):
    documented = {(method, path) for method, path, _ in operations(schema)}
    assert documented >= EXPECTED
    # And every route under /api/v1/ is in the schema (no endpoint hidden from the docs).
    routes = set(api_routes(get_resolver()))
    assert routes and routes <= set(schema["paths"]), routes - set(schema["paths"])


def api_routes(resolver, prefix=""):
    """OpenAPI-style paths of every URL under ``api/v1/`` (path converters and regex groups alike)."""
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern).lstrip("^")
        if isinstance(entry, URLResolver):
            yield from api_routes(entry, route)
            continue
        route = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", route)  # regex groups
        route = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)  # path converters
        route = route.replace("$", "").replace("\\", "")
        if route.startswith("api/v1/") and "{format}" not in route:
            yield "/" + route


def test_error_responses_use_the_envelope(schema):
    for method, path, operation in operations(schema):
        if (method, path) not in EXPECTED:
            continue
        responses = operation["responses"]
        if (method, path) not in PUBLIC:
            assert "401" in responses, (method, path)
            assert "429" in responses, (method, path)
            assert {"Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining"} <= set(responses["429"]["headers"])
        assert "Retry-After" in responses["503"]["headers"], (method, path)
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/ErrorEnvelope", (method, path, status)
    envelope = schema["components"]["schemas"]["ErrorEnvelope"]
    assert set(envelope["properties"]) == {"success", "errors"}


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("post", P + "/agents", {"201", "400", "401", "403", "404", "409", "413", "429", "503"}),
        ("patch", A, {"200", "400", "401", "403", "404", "409", "413", "429", "503"}),
        ("delete", A, {"200", "400", "401", "403", "404", "409", "429", "503"}),
        ("post", A + "/pause", {"200", "400", "401", "403", "404", "409", "413", "429", "503"}),
        ("get", P + "/agents", {"200", "400", "401", "404", "429", "503"}),
        ("get", A, {"200", "401", "404", "429", "503"}),
        # A bad token is 401 on any operation, the login included; a body can be too large anywhere.
        ("post", "/api/v1/auth/token", {"200", "400", "401", "413", "429", "503"}),
    ],
)
def test_agent_operations_list_their_errors(schema, method, path, statuses):
    assert set(schema["paths"][path][method]["responses"]) == statuses


def test_every_operation_documents_the_errors_its_shape_implies(schema):
    """``SyndarixAutoSchema``: 401 everywhere, 400 with input, 404 with path ids or pages, 413 with a body."""
    for method, path, operation in operations(schema):
        responses, parameters = operation["responses"], operation.get("parameters", [])
        assert "401" in responses, (method, path)
        if "requestBody" in operation:
            assert {"400", "413"} <= set(responses), (method, path)
        if any(p["in"] == "query" for p in parameters):
            assert "400" in responses, (method, path)
        if any(p["in"] == "path" or p["name"] == "page" for p in parameters):
            assert "404" in responses, (method, path)


def test_lists_document_the_pagination_envelope(schema):
    ref = schema["paths"][P + "/agents"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert set(page["properties"]) == {"data", "pagination"}
    names = {p["name"] for p in schema["paths"][P + "/agents"]["get"]["parameters"]}
    assert {"page", "limit", "status", "agent_type", "q", "ordering", "include_playground"} <= names
    assert "Idempotency-Key" in {p["name"] for p in schema["paths"][A]["patch"]["parameters"]}


def test_schema_and_docs_are_served(client):
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content


def test_every_operation_is_filed_under_a_named_tag(schema):
    """Swagger groups by tag: no endpoint under the path segment "v1" or the generic "api"."""
    tags = {tuple(op.get("tags", [])) for ops in schema["paths"].values() for op in ops.values()}
    assert all(len(t) == 1 for t in tags) and not {("v1",), ("api",)} & tags
    paths = schema["paths"]
    assert paths["/api/v1/projects/{project_id}/contexts"]["get"]["tags"] == ["contexts"]
    assert paths["/api/v1/projects/{project_id}/agents/{agent_id}/runs"]["get"]["tags"] == ["runs"]
    assert paths["/api/v1/"]["get"]["tags"] == ["root"]


def test_the_browsable_api_root_reads_as_plain_text(client):
    html = client.get("/api/v1/", HTTP_ACCEPT="text/html").content.decode()
    assert "Links to the top-level collections" in html and "``" not in html
