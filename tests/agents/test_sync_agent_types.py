"""``sync_agent_types`` and its service: agent types follow the registered classes, idempotently."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from agents.models import AgentType
from agents.registry import AgentRegistry, BaseAgent, builtin, registry
from agents.services import agent_types_sync
from tests.factories import AgentTypeFactory

pytestmark = pytest.mark.django_db

BUILTIN_SLUGS = ["builder", "reviewer", "tester"]


class Triage(BaseAgent):
    slug = "triage"
    name = "Triage"
    description = "Sorts incoming issues."
    capabilities = ("labeling", "routing")  # a tuple is stored as a JSON list
    config_schema = {"type": "object", "required": ["queue"], "properties": {"queue": {"type": "string"}}}


def run(*args, verbosity: int = 1) -> str:
    out = StringIO()
    call_command("sync_agent_types", *args, verbosity=verbosity, stdout=out)
    return out.getvalue()


def fields(slug: str) -> dict:
    row = AgentType.objects.get(slug=slug)
    return {
        "name": row.name,
        "description": row.description,
        "capabilities": row.capabilities,
        "config_schema": row.config_schema,
        "handler": row.handler,
        "is_active": row.is_active,
    }


def test_first_run_creates_a_type_per_class_and_the_second_reports_all_unchanged():
    assert run() == "Agent types: 3 created, 0 updated, 0 unchanged, 0 deactivated.\n"
    for cls in builtin.BUILTIN_AGENTS:
        assert fields(cls.slug) == {
            "name": cls.name,
            "description": cls.description,
            "capabilities": cls.capabilities,
            "config_schema": cls.config_schema,
            "handler": cls.slug,
            "is_active": True,
        }
    before = {row.pk: row.updated_at for row in AgentType.objects.all()}
    assert run() == "Agent types: 0 created, 0 updated, 3 unchanged, 0 deactivated.\n"
    assert {row.pk: row.updated_at for row in AgentType.objects.all()} == before  # nothing was written


def test_service_is_idempotent_with_json_normalised_definitions():
    reg = AgentRegistry()
    reg.register(Triage)
    first = agent_types_sync(reg)
    assert (first.created, first.updated, first.unchanged) == (["triage"], [], [])
    assert fields("triage")["capabilities"] == ["labeling", "routing"]
    second = agent_types_sync(reg)
    assert second.counts() == {"created": 0, "updated": 0, "unchanged": 1, "deactivated": 0}


def test_changed_definitions_are_updated_field_by_field_and_is_active_is_left_alone():
    AgentTypeFactory(
        slug="reviewer", name="Old name", description=builtin.ReviewerAgent.description, handler="",
        capabilities=builtin.ReviewerAgent.capabilities, config_schema={}, is_active=False,
    )
    AgentTypeFactory(slug="tester", name="Tester", handler="tester", description=builtin.TesterAgent.description,
                     capabilities=builtin.TesterAgent.capabilities, config_schema=builtin.TesterAgent.config_schema)
    report = agent_types_sync(registry)
    assert (report.created, report.updated, report.unchanged) == (["builder"], ["reviewer"], ["tester"])
    reviewer = fields("reviewer")
    assert (reviewer["name"], reviewer["handler"], reviewer["is_active"]) == ("Reviewer", "reviewer", False)
    assert reviewer["config_schema"] == builtin.ReviewerAgent.config_schema


def test_dry_run_reports_and_writes_nothing():
    AgentTypeFactory(slug="reviewer", name="Old name", handler="reviewer")
    AgentTypeFactory(slug="legacy", handler="legacy")
    output = run("--dry-run", "--deactivate-missing")
    assert output == "Dry run, nothing written. Agent types: 2 created, 1 updated, 0 unchanged, 1 deactivated.\n"
    assert sorted(AgentType.objects.values_list("slug", flat=True)) == ["legacy", "reviewer"]
    assert AgentType.objects.get(slug="reviewer").name == "Old name"
    assert AgentType.objects.get(slug="legacy").is_active


def test_deactivate_missing_only_touches_types_whose_class_is_gone():
    AgentTypeFactory(slug="legacy", handler="legacy-class")
    AgentTypeFactory(slug="handmade", handler="")
    AgentTypeFactory(slug="retired", handler="retired-class", is_active=False)
    assert "0 deactivated" in run()
    assert AgentType.objects.get(slug="legacy").is_active
    output = run("--deactivate-missing", verbosity=2)
    assert "  deactivated legacy\n" in output
    assert output.endswith("Agent types: 0 created, 0 updated, 3 unchanged, 1 deactivated.\n")
    assert list(AgentType.objects.filter(is_active=False).order_by("slug").values_list("slug", flat=True)) == [
        "legacy", "retired"
    ]
    assert AgentType.objects.get(slug="handmade").is_active


def test_verbosity_two_lists_each_type_and_zero_is_silent():
    output = run(verbosity=2)
    assert [line.split() for line in output.splitlines()[:-1]] == [["created", slug] for slug in BUILTIN_SLUGS]
    assert run(verbosity=0) == ""


def test_a_class_registered_later_is_created_on_the_next_sync():
    run()
    registry.register(Triage)
    try:
        assert run() == "Agent types: 1 created, 0 updated, 3 unchanged, 0 deactivated.\n"
    finally:
        registry.unregister("triage")
    assert fields("triage")["handler"] == "triage"


def test_an_unchanged_sync_takes_the_same_queries_for_one_class_or_many(django_assert_num_queries):
    one = AgentRegistry()
    one.register(Triage)
    agent_types_sync(one)
    agent_types_sync(registry)
    with django_assert_num_queries(3):  # savepoint, one SELECT ... FOR UPDATE, release
        agent_types_sync(one)
    with django_assert_num_queries(3):
        agent_types_sync(registry)
