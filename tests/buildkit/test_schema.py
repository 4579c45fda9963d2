"""Template validation: the shipped JSON Schema plus the checks it cannot express, with paths."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from buildkit.platform_ops import platform_ops
from buildkit.schema import SCHEMA_PATH, TEMPLATE_MAX_BYTES, template_errors, template_schema, validate_template
from syndarix.exceptions import InvalidInput, PayloadTooLarge

FULL = {
    "instructions": {"agents_md": "# Triage\nLabel new issues."},
    "llm": {"model": "gpt-4.1-mini", "provider": "openai", "connection": None, "extras": {"temperature": 0}},
    "tools": [
        {"type": "platform", "op": "query_agents", "permission": "allow"},
        {"type": "client", "name": "confirm", "description": "Ask", "input_schema": {"type": "object"}},
        {"type": "code", "name": "count_lines", "runtime": "python", "script": "print(1)",
         "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}, "permission": "ask"},
        {"type": "reference", "slug": "helper", "version": "v2", "permission": "deny"},
        {"@ag.embed": {"@ag.references": {"workflow": {"slug": "__sx__request_input", "version": 1}}}},
    ],
    "skills": [
        {"name": "house-style", "description": "How we write", "content": "Be brief."},
        {"@ag.embed": {"@ag.references": {"workflow": {"slug": "__sx__getting_started"}}}},
    ],
    "mcps": [{"name": "github", "transport": "http", "url": "https://mcp.example.com"}],
    "sandbox": {"kind": "local", "permissions": {"write_files": "deny", "execute_code": "ask"}, "extras": {}},
    "runner": {"kind": "sidecar", "permissions": {"default": "allow_reads"}},
    "harness": {"kind": "core", "permissions": {"default_mode": "ask", "allow": ["read"], "deny": ["bash"]}},
}


def test_schema_file_ships_with_the_app_and_is_valid():
    assert SCHEMA_PATH.name == "agent_template.schema.json" and SCHEMA_PATH.exists()
    assert template_schema()["title"].startswith("Agent template")


def test_a_full_template_is_valid():
    assert template_errors(FULL) == {}


def test_the_smallest_template_is_an_llm_model():
    assert template_errors({"llm": {"model": "m"}}) == {}
    assert template_errors({"llm": {}}) == {}, "without a model the agent follows AGENT_LLM_MODEL"
    assert template_errors({"llm": {"tool_choice": "required", "max_tokens": 512}}) == {}
    assert template_errors({}) == {"template": ["'llm' is a required property"]}


@pytest.mark.parametrize(
    ("template", "errors"),
    [
        ("text", {"template": ["Must be a JSON object."]}),
        ({"llm": {"model": "m"}, "colour": "red"}, {"template": ["Unknown field(s): colour."]}),
        ({"llm": {"model": ""}}, {"template.llm.model": ["'' should be non-empty"]}),
        ({"llm": {"model": "m"}, "tools": [{"type": "platform"}]},
         {"template.tools.0": ["'op' is a required property"]}),
        ({"llm": {"model": "m"}, "tools": [{"type": "magic"}]},
         {"template.tools.0.type": ["'magic' is not one of ['platform', 'client', 'code', 'reference']"]}),
        ({"llm": {"model": "m"}, "tools": [{"name": "x"}]}, {"template.tools.0": ["'type' is a required property"]}),
        ({"llm": {"model": "m"}, "tools": [{"type": "platform", "op": "query_agents", "permission": "maybe"}]},
         {"template.tools.0.permission": ["'maybe' is not one of ['allow', 'ask', 'deny']"]}),
        ({"llm": {"model": "m"}, "tools": [{"type": "platform", "op": "launch_rockets"}]},
         {"template.tools.0.op": [
             f"Unknown platform operation 'launch_rockets'. Known: {', '.join(platform_ops())}."]}),
        ({"llm": {"model": "m"}, "tools": [{"type": "client", "name": "x", "input_schema": {"type": 5}}]},
         {"template.tools.0.input_schema": ["Not a valid JSON Schema: 5 is not valid under any of the given schemas"]}),
        ({"llm": {"model": "m"}, "sandbox": {"permissions": {"write_files": "yes"}}},
         {"template.sandbox.permissions.write_files": ["'yes' is not one of ['allow', 'ask', 'deny']"]}),
        ({"llm": {"model": "m"}, "mcps": [{"name": "a"}, {"name": "a"}]},
         {"template.mcps.1": ["Duplicate of mcps.0 (name:a)."]}),
        ({"llm": {"model": "m"}, "tools": [{"type": "platform", "op": "query_agents"}] * 2},
         {"template.tools.1": ["Duplicate of tools.0 (platform:query_agents)."]}),
        ({"llm": {"model": "m"}, "skills": [{"@ag.embed": {"@ag.references": {"workflow": {
            "slug": "__sx__build_kit"}}}}]},
         {"template.skills.0": ["'__sx__build_kit' can be fetched but not embedded in a template."]}),
        ({"llm": {"model": "m"}, "skills": [{"@ag.embed": {"@ag.references": {"workflow": {"slug": "__sx__nope"}}}}]},
         {"template.skills.0": ["No platform workflow '__sx__nope'."]}),
        ({"llm": {"model": "m"}, "skills": [{"@ag.embed": {"@ag.references": {"workflow": {
            "slug": "__sx__getting_started", "version": "v9"}}}}]},
         {"template.skills.0": ["'__sx__getting_started' has no version 9."]}),
        ({"llm": {"model": "m"}, "skills": [{"@ag.embed": {"@ag.references": {"workflow": {"slug": "x"}}, "y": 1}}]},
         {"template.skills.0.@ag.embed": ["Unknown field(s): y."]}),
    ],
)
def test_errors_are_reported_by_path(template, errors):
    assert template_errors(template) == errors


def test_several_errors_are_all_reported():
    errors = template_errors(
        {"llm": {"model": ""}, "tools": [{"type": "platform", "op": "nope"}], "sandbox": {"kind": "moon"}}
    )
    assert set(errors) == {"template.llm.model", "template.tools.0.op", "template.sandbox.kind"}


def test_embeds_deep_inside_other_fields_are_checked():
    template = {"llm": {"model": "m", "extras": {"x": {"@ag.embed": {"@ag.references": {
        "workflow": {"slug": "__sx__build_kit"}}}}}}}
    assert list(template_errors(template)) == ["template.llm.extras.x"]


def test_validate_template_raises_per_path():
    with pytest.raises(ValidationError) as info:
        validate_template({"llm": {"model": "m"}, "tools": [{"type": "platform", "op": "nope"}]})
    assert list(info.value.message_dict) == ["template.tools.0.op"]


def test_oversized_template_is_413():
    with pytest.raises(PayloadTooLarge):
        validate_template({"llm": {"model": "m"}, "instructions": {"agents_md": "x" * (TEMPLATE_MAX_BYTES + 1)}})


def test_deep_nesting_is_refused_before_the_schema_runs():
    deep: dict = {}
    node = deep
    for _ in range(200):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(InvalidInput) as info:
        validate_template({"llm": {"model": "m", "extras": deep}})
    assert (info.value.code, info.value.field, info.value.extra) == ("nesting_too_deep", "template", {"max_depth": 64})
    assert template_errors({"llm": {"model": "m", "extras": deep}}) == {
        "template": ["The template is nested deeper than 64 levels."]
    }


def test_duplicates_can_be_allowed_for_effective_templates():
    template = {"llm": {"model": "m"}, "mcps": [{"name": "a"}, {"name": "a"}]}
    assert template_errors(template, check_identities=False) == {}


def test_nul_characters_are_refused():
    with pytest.raises(InvalidInput) as info:
        validate_template({"llm": {"model": "m"}, "instructions": {"agents_md": "a\x00b"}})
    assert (info.value.code, info.value.field) == ("nul_character", "template")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_infinity_are_refused(value):
    with pytest.raises(InvalidInput) as info:
        validate_template({"llm": {"model": "m", "extras": {"t": value}}})
    assert (info.value.code, info.value.field) == ("invalid_data", "template")
    assert list(template_errors({"llm": {"model": "m", "extras": {"t": value}}})) == ["template"]


def test_oversized_template_is_one_error_in_template_errors():
    errors = template_errors({"llm": {"model": "m"}, "instructions": {"agents_md": "x" * (TEMPLATE_MAX_BYTES + 1)}})
    assert list(errors) == ["template"] and "limit" in errors["template"][0]


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "platform", "op": "query_agents"},
        {"type": "client", "name": "ask", "input_schema": {"type": "object"}},
        {"type": "code", "name": "run", "runtime": "python", "script": "print(1)", "input_schema": {"type": "object"}},
        {"type": "reference", "slug": "other"},
    ],
)
def test_every_tool_may_carry_render(tool):
    """B7: each tool may carry ``render`` (a UI hint, ``{"kind", ...}``) and ``permission``."""
    template = {"llm": {"model": "m"}, "tools": [{**tool, "render": {"kind": "connect"}, "permission": "ask"}]}
    assert template_errors(template) == {}
    bad = {"llm": {"model": "m"}, "tools": [{**tool, "render": {"style": "x"}}]}
    assert list(template_errors(bad)) == ["template.tools.0.render"]


def test_embeds_may_carry_sibling_keys():
    """B6: siblings of ``@ag.embed`` (a display ``name``) are allowed; resolution drops them."""
    embed = {"@ag.embed": {"@ag.references": {"workflow": {"slug": "__sx__request_input"}}}}
    template = {"llm": {"model": "m"}, "tools": [{"name": "Request input", **embed}],
                "skills": [{"name": "Getting started", "note": "x",
                            "@ag.embed": {"@ag.references": {"workflow": {"slug": "__sx__getting_started"}}}}]}
    assert template_errors(template) == {}
    # the embed body itself stays strict
    strict = {"llm": {"model": "m"}, "tools": [{"@ag.embed": {"@ag.references": {"workflow": {"slug": "a"}},
                                                              "other": 1}}]}
    assert list(template_errors(strict)) == ["template.tools.0.@ag.embed"]
