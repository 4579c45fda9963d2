"""The platform-ops catalog, the static reserved-slug catalog, versions and reserved agent-type slugs."""

from __future__ import annotations

import dataclasses

import pytest
from django import forms
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import IntegrityError, transaction
from jsonschema import Draft202012Validator
from rest_framework import serializers

from agents.models import AgentType
from agents.runtime.tools.registry import Tool, ToolRegistry, tool_registry
from buildkit.catalog import (
    STATIC_CATALOG,
    InvalidVersion,
    StaticEntry,
    get_entry,
    normalize_version,
    validate_catalog,
)
from buildkit.platform_ops import get_op, platform_ops
from buildkit.schema import template_errors
from tests import factories

# --- platform ops: the platform tools of the one registry ---------------------------------------------


def test_catalog_declares_the_required_ops():
    assert {"find_capabilities", "query_agents", "read_context", "write_context", "spawn_agent",
            "commit_revision", "pause_agent", "resume_agent", "terminate_agent", "create_issue",
            "update_issue"} <= set(platform_ops())


def test_the_catalog_is_the_registry_not_a_second_list():
    assert list(platform_ops().values()) == tool_registry.platform_tools()
    assert all(get_op(name) is tool_registry.get(name) for name in platform_ops())
    assert get_op("request_input") is None  # a client tool, not an op


@pytest.mark.parametrize("op", list(platform_ops().values()), ids=list(platform_ops()))
def test_each_op_is_complete(op):
    Draft202012Validator.check_schema(op.input_schema)
    Draft202012Validator.check_schema(op.output_schema)
    assert op.description and op.title and op.route[1].startswith("/api/v1/")
    assert op.default_permission == ("allow" if op.read_only else "ask")
    assert op.annotations["readOnlyHint"] is op.read_only


def test_reads_allow_and_writes_ask():
    ops = platform_ops().values()
    assert {o.name for o in ops if o.read_only} == {"find_capabilities", "query_agents", "read_context",
                                                      "list_contexts", "query_issues", "read_run"}
    assert {o.name for o in ops if o.destructive} == {"terminate_agent", "commit_revision"}
    assert {o.default_permission for o in ops if not o.read_only} == {"ask"}


def test_the_build_kit_offers_the_authoring_ops():
    assert [o.name for o in platform_ops().values() if o.in_build_kit] == [
        "query_agents", "read_context", "write_context", "spawn_agent", "find_capabilities", "commit_revision"]


def test_every_op_route_exists():
    from django.urls import resolve

    some_id = "7f9c6a52-3f57-4a6b-9a55-1c1f0f3e2a10"
    for op in platform_ops().values():
        path = op.route[1]
        for placeholder in ("project_id", "agent_type_id", "context_id", "agent_id", "issue_id", "run_id",
                            "approval_id"):
            path = path.replace("{" + placeholder + "}", some_id)
        resolve(path)


def _nothing(call):
    return {}


def _tool(**changes):
    base = Tool(name="ok_tool", title="OK", description="d", input_schema={"type": "object"},
                handler=_nothing, read_only=True, route=("GET", "/api/v1/things"))
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    ("tool", "message"),
    [
        (_tool(name="Bad-Name"), "name must match"),
        (_tool(description=" "), "needs a title and a description"),
        (_tool(handler=None), "needs a handler"),
        (_tool(route=("FETCH", "/api/v1/things")), "known method"),
        (_tool(route=("GET", "/elsewhere")), "/api/v1/"),
        (_tool(input_schema={"type": "nonsense"}), "invalid input schema"),
        (_tool(input_schema={"type": "array"}), "must describe an object"),
        (_tool(output_schema={"type": "array"}), "must describe an object"),
    ],
)
def test_tools_are_validated(tool, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        ToolRegistry().register(tool)


def test_a_name_is_declared_once():
    registry = ToolRegistry()
    registry.register(_tool())
    registry.register(_tool())  # the same declaration again is a no-op
    with pytest.raises(ImproperlyConfigured, match="declared twice"):
        registry.register(_tool(description="another"))


# --- static catalog ---------------------------------------------------------------------------------


def test_static_catalog_entries():
    assert list(STATIC_CATALOG) == ["__sx__getting_started", "__sx__request_connection", "__sx__request_input",
                                    "__sx__build_kit"]
    assert {s: e.kind for s, e in STATIC_CATALOG.items()} == {
        "__sx__getting_started": "skill", "__sx__request_connection": "tool", "__sx__request_input": "tool",
        "__sx__build_kit": "agent_config"}
    assert [s for s, e in STATIC_CATALOG.items() if not e.embeddable] == ["__sx__build_kit"]


def test_getting_started_is_a_markdown_skill():
    skill = get_entry("__sx__getting_started").document()
    assert skill["content"].startswith("# Authoring a Syndarix agent")
    assert template_errors({"llm": {"model": "m"}, "skills": [skill]}) == {}


@pytest.mark.parametrize("slug", ["__sx__request_connection", "__sx__request_input"])
def test_client_tools_are_valid_template_tools(slug):
    tool = get_entry(slug).document()
    assert tool["type"] == "client" and tool["name"] and tool["description"]
    Draft202012Validator.check_schema(tool["input_schema"])
    assert template_errors({"llm": {"model": "m"}, "tools": [tool]}) == {}


def test_client_tools_follow_the_contract():
    """B5: request_connection renders as ``connect``; request_input is an MCP elicitation
    (``message`` + ``requestedSchema``, both required) rendered as ``elicitation``."""
    connection = get_entry("__sx__request_connection").document()
    assert connection["render"] == {"kind": "connect"}
    assert connection["input_schema"]["required"] == ["integration"]
    assert set(connection["input_schema"]["properties"]) == {"integration", "slug", "mode"}
    assert connection["input_schema"]["properties"]["mode"]["enum"] == ["oauth", "api_key"]
    request_input = get_entry("__sx__request_input").document()
    assert request_input["render"] == {"kind": "elicitation"}
    assert request_input["input_schema"]["required"] == ["message", "requestedSchema"]
    assert set(request_input["input_schema"]["properties"]) == {"message", "requestedSchema"}


def test_build_kit_entry_is_the_overlay():
    from buildkit.overlay import build_overlay

    assert get_entry("__sx__build_kit").document() == build_overlay()


def test_documents_are_fresh_copies():
    first = get_entry("__sx__request_input").document()
    first["input_schema"]["required"].clear()
    assert get_entry("__sx__request_input").document()["input_schema"]["required"]


@pytest.mark.parametrize("value", [1, "1", "v1", "V1", " v1 "])
def test_version_spellings_are_equal(value):
    assert normalize_version(value) == 1


@pytest.mark.parametrize("value", [0, -1, "0", "v0", "latest", "1.0", True, None, 1.0, "", "vv1"])
def test_bad_versions_are_refused(value):
    with pytest.raises(InvalidVersion):
        normalize_version(value)


def test_static_catalog_is_validated():
    entry = StaticEntry(slug="__sx__x", kind="skill", name="x", description="x", embeddable=True, versions={1: dict})
    with pytest.raises(ImproperlyConfigured, match="must start with"):
        validate_catalog([dataclasses.replace(entry, slug="plain")])
    with pytest.raises(ImproperlyConfigured, match="twice"):
        validate_catalog([entry, entry])
    with pytest.raises(ImproperlyConfigured, match="unknown kind"):
        validate_catalog([dataclasses.replace(entry, kind="widget")])
    with pytest.raises(ImproperlyConfigured, match="bad versions"):
        validate_catalog([dataclasses.replace(entry, latest=2)])


# --- reserved slugs on agent types ------------------------------------------------------------------


@pytest.mark.django_db
def test_full_clean_refuses_a_reserved_slug():
    agent_type = AgentType(name="Sneaky", slug="__sx__getting_started")
    with pytest.raises(ValidationError) as info:
        agent_type.full_clean()
    assert info.value.message_dict == {"slug": ["Slugs starting with '__sx__' are reserved for the platform."]}


@pytest.mark.django_db
def test_renaming_to_a_reserved_slug_is_refused():
    agent_type = factories.AgentTypeFactory()
    agent_type.slug = "__sx__mine"
    with pytest.raises(ValidationError):
        agent_type.full_clean()


@pytest.mark.django_db
def test_database_refuses_a_reserved_slug_that_skipped_validation():
    with pytest.raises(IntegrityError), transaction.atomic():
        AgentType.objects.create(name="Sneaky", slug="__sx__x")


@pytest.mark.django_db
def test_model_form_and_model_serializer_refuse_a_reserved_slug():
    """The admin (a ModelForm) and the API (a ModelSerializer) both pick the model's slug rule up."""

    class Form(forms.ModelForm):
        class Meta:
            model = AgentType
            fields = ["name", "slug"]

    class Serializer(serializers.ModelSerializer):
        class Meta:
            model = AgentType
            fields = ["name", "slug"]

    form = Form(data={"name": "x", "slug": "__sx__x"})
    assert not form.is_valid() and "reserved" in form.errors["slug"][0]
    serializer = Serializer(data={"name": "x", "slug": "__sx__x"})
    assert not serializer.is_valid() and "reserved" in str(serializer.errors["slug"][0])
    assert Serializer(data={"name": "x", "slug": "sx-x"}).is_valid()
