"""The build-kit overlay: how it is assembled, and the merge rule that applies it (pure)."""

from __future__ import annotations

import copy

import pytest

from buildkit import overlay as overlay_module
from buildkit.catalog import STATIC_CATALOG
from buildkit.overlay import (
    KIT_SANDBOX_PERMISSIONS,
    apply_overlay,
    build_overlay,
    mcp_identity,
    skill_identity,
    tool_identity,
)
from buildkit.platform_ops import platform_ops
from tests.buildkit.conftest import embed


def merge(template, overlay):
    """Apply, and assert neither input was touched."""
    before_t, before_o = copy.deepcopy(template), copy.deepcopy(overlay)
    effective, overrides = apply_overlay(template, overlay)
    assert template == before_t
    assert overlay == before_o
    return effective, overrides


# --- assembling the overlay -------------------------------------------------------------------

def test_overlay_lists_every_platform_op_then_the_client_tool_embeds():
    tools = build_overlay()["tools"]
    ops = [t["op"] for t in tools if t.get("type") == "platform"]
    assert ops == [op.name for op in platform_ops().values() if op.in_build_kit]
    assert {"find_capabilities", "query_agents", "read_context", "write_context", "spawn_agent",
            "commit_revision"} <= set(ops)
    assert tools[len(ops):] == [
        {"name": "Request connection", **embed("__sx__request_connection")},
        {"name": "Request input", **embed("__sx__request_input")},
    ]


def test_overlay_platform_tools_carry_the_default_permission():
    tools = {t["op"]: t["permission"] for t in build_overlay()["tools"] if t.get("type") == "platform"}
    assert tools["query_agents"] == "allow"
    assert tools["spawn_agent"] == "ask"


def test_overlay_skills_and_sandbox():
    kit = build_overlay()
    assert kit["skills"] == [{"name": "Getting started", **embed("__sx__getting_started")}]
    assert kit["sandbox"] == {"permissions": {"write_files": "allow", "execute_code": "allow"}}
    assert "__sx__build_kit" not in str(kit)  # never embeds itself


def test_overlay_is_assembled_from_the_catalogs(monkeypatch):
    """A new catalog entry or op shows up in the kit without touching the overlay module."""
    from buildkit.catalog import StaticEntry

    extra = StaticEntry(slug="__sx__new_tool", kind="tool", name="New", description="d", embeddable=True,
                        versions={1: dict})
    hidden = StaticEntry(slug="__sx__hidden", kind="tool", name="Hidden", description="d", embeddable=False,
                         versions={1: dict})
    monkeypatch.setitem(STATIC_CATALOG, extra.slug, extra)
    monkeypatch.setitem(STATIC_CATALOG, hidden.slug, hidden)
    tools = build_overlay()["tools"]
    assert tools[-1] == {"name": "New", **embed("__sx__new_tool")}
    assert "__sx__hidden" not in str(tools)


def test_overlay_embeds_carry_a_display_name_that_resolution_drops():
    """B3 as merged: a display-only sibling ``name``; B6: the whole embed object is replaced."""
    from buildkit.embed import resolve_embeds
    from buildkit.schema import template_errors

    kit = build_overlay()
    embeds = [t for t in kit["tools"] + kit["skills"] if "@ag.embed" in t]
    assert embeds and all(isinstance(e["name"], str) and e["name"] for e in embeds)
    assert template_errors({"llm": {"model": "m"}, "tools": kit["tools"], "skills": kit["skills"]}) == {}
    resolved = resolve_embeds({"tools": kit["tools"], "skills": kit["skills"]}).value
    names = [t["name"] for t in resolved["tools"] if t.get("type") == "client"]
    assert names == ["request_connection", "request_input"]
    assert resolved["skills"][0]["name"] == "syndarix-getting-started"


def test_a_display_name_does_not_change_an_embed_identity():
    assert tool_identity({"name": "Request input", **embed("__sx__request_input")}) == "workflow:__sx__request_input"
    user = {"tools": [{"name": "Mine", **embed("__sx__request_input")}]}
    effective, overrides = merge(user, build_overlay())
    assert [t.get("name") for t in effective["tools"] if "@ag.embed" in t] == ["Request input", "Request connection"]
    assert overrides == []  # display names are dropped on resolution: nothing the agent runs changed
    pinned = {"tools": [{"name": "Mine", **embed("__sx__request_input", version=1)}]}
    _, overrides = merge(pinned, build_overlay())
    assert overrides == [{"path": "tools.0.@ag.embed.@ag.references.workflow.version", "user_value": 1,
                          "kit_value": None}]


def test_overlay_is_a_new_object_each_time():
    first = build_overlay()
    first["tools"].clear()
    first["sandbox"]["permissions"]["write_files"] = "deny"
    assert build_overlay()["tools"]
    assert KIT_SANDBOX_PERMISSIONS["write_files"] == "allow"


# --- identities -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("entry", "identity"),
    [
        ({"type": "platform", "op": "query_agents"}, "platform:query_agents"),
        ({"type": "platform", "op": "x", "name": "n"}, "platform:x"),
        (embed("__sx__request_input"), "workflow:__sx__request_input"),
        ({"type": "client", "name": "ask_user", "input_schema": {}}, "name:ask_user"),
        ({"type": "code", "name": "lint", "runtime": "python", "script": "x", "input_schema": {}}, "name:lint"),
        ({"type": "reference", "slug": "helper"}, None),
        ({}, None),
        ("not-an-object", None),
    ],
)
def test_tool_identity(entry, identity):
    assert tool_identity(entry) == identity


def test_skill_and_mcp_identities():
    assert skill_identity(embed("__sx__getting_started")) == "workflow:__sx__getting_started"
    assert skill_identity({"name": "inline", "content": "x"}) is None
    assert mcp_identity({"name": "github"}) == "name:github"
    assert mcp_identity({"url": "x"}) is None


# --- list keys: identity merge ----------------------------------------------------------------

def test_matching_tool_is_replaced_in_place():
    template = {"tools": [{"type": "client", "name": "a", "input_schema": {}},
                          {"type": "platform", "op": "query_agents", "permission": "deny"},
                          {"type": "client", "name": "b", "input_schema": {}}]}
    kit = {"tools": [{"type": "platform", "op": "query_agents", "permission": "allow"}]}
    effective, overrides = merge(template, kit)
    assert [tool_identity(t) for t in effective["tools"]] == ["name:a", "platform:query_agents", "name:b"]
    assert effective["tools"][1] == {"type": "platform", "op": "query_agents", "permission": "allow"}
    assert overrides == [{"path": "tools.1.permission", "user_value": "deny", "kit_value": "allow"}]


def test_unmatched_entries_are_appended_in_overlay_order():
    template = {"tools": [{"type": "client", "name": "a", "input_schema": {}}]}
    kit = {"tools": [{"type": "platform", "op": "x"}, embed("__sx__request_input")]}
    effective, overrides = merge(template, kit)
    assert effective["tools"] == [template["tools"][0], {"type": "platform", "op": "x"}, embed("__sx__request_input")]
    assert overrides == []


def test_embed_identity_matches_the_same_slug():
    template = {"tools": [embed("__sx__request_input", version=1)]}
    kit = {"tools": [embed("__sx__request_input")]}
    effective, overrides = merge(template, kit)
    assert effective["tools"] == [embed("__sx__request_input")]
    assert overrides == [{"path": "tools.0.@ag.embed.@ag.references.workflow.version", "user_value": 1,
                          "kit_value": None}]


def test_name_identity_matches_a_user_tool_of_the_same_name():
    template = {"tools": [{"type": "client", "name": "ask", "description": "mine", "input_schema": {}}]}
    kit = {"tools": [{"type": "client", "name": "ask", "description": "kit", "input_schema": {}}]}
    effective, overrides = merge(template, kit)
    assert effective["tools"] == kit["tools"]
    assert overrides == [{"path": "tools.0.description", "user_value": "mine", "kit_value": "kit"}]


def test_entries_without_identity_are_always_appended():
    template = {"tools": [{"type": "reference", "slug": "helper"}], "skills": [{"name": "s", "content": "x"}]}
    kit = {"tools": [{"type": "reference", "slug": "helper"}], "skills": [{"name": "s", "content": "x"}]}
    effective, overrides = merge(template, kit)
    assert effective["tools"] == [{"type": "reference", "slug": "helper"}] * 2
    assert effective["skills"] == [{"name": "s", "content": "x"}] * 2
    assert overrides == []


def test_skills_merge_by_embed_slug():
    template = {"skills": [{"name": "mine", "content": "x"}, embed("__sx__getting_started", version="v1")]}
    kit = {"skills": [embed("__sx__getting_started")]}
    effective, _ = merge(template, kit)
    assert effective["skills"] == [{"name": "mine", "content": "x"}, embed("__sx__getting_started")]


def test_mcps_merge_by_name():
    template = {"mcps": [{"name": "github", "url": "https://a"}, {"name": "linear"}]}
    kit = {"mcps": [{"name": "github", "url": "https://b"}, {"name": "slack"}]}
    effective, overrides = merge(template, kit)
    assert effective["mcps"] == [{"name": "github", "url": "https://b"}, {"name": "linear"}, {"name": "slack"}]
    assert overrides == [{"path": "mcps.0.url", "user_value": "https://a", "kit_value": "https://b"}]


def test_equal_entries_replace_without_an_override():
    template = {"tools": [{"type": "platform", "op": "query_agents", "permission": "allow"}]}
    effective, overrides = merge(template, {"tools": [{"type": "platform", "op": "query_agents",
                                                       "permission": "allow"}]})
    assert effective == template
    assert overrides == []


def test_kit_entry_dropping_a_user_value_is_an_override():
    template = {"tools": [{"type": "platform", "op": "spawn_agent", "permission": "deny"}]}
    effective, overrides = merge(template, {"tools": [{"type": "platform", "op": "spawn_agent"}]})
    assert effective["tools"] == [{"type": "platform", "op": "spawn_agent"}]
    assert overrides == [{"path": "tools.0.permission", "user_value": "deny", "kit_value": None}]


def test_two_kit_entries_with_one_identity_report_the_user_value_once():
    template = {"tools": [{"type": "platform", "op": "x", "permission": "deny"}]}
    kit = {"tools": [{"type": "platform", "op": "x", "permission": "ask"},
                     {"type": "platform", "op": "x", "permission": "allow"}]}
    effective, overrides = merge(template, kit)
    assert effective["tools"] == [{"type": "platform", "op": "x", "permission": "allow"}]
    assert overrides == [{"path": "tools.0.permission", "user_value": "deny", "kit_value": "ask"}]


def test_missing_list_is_created_and_a_non_list_is_replaced():
    effective, overrides = merge({}, {"tools": [{"type": "platform", "op": "x"}]})
    assert effective == {"tools": [{"type": "platform", "op": "x"}]}
    assert overrides == []
    effective, overrides = merge({"skills": "oops"}, {"skills": [embed("__sx__getting_started")]})
    assert effective["skills"] == [embed("__sx__getting_started")]
    assert overrides == [{"path": "skills", "user_value": "oops", "kit_value": [embed("__sx__getting_started")]}]


# --- object keys: deep merge ------------------------------------------------------------------

def test_objects_deep_merge_with_the_overlay_winning_at_the_leaf():
    template = {"sandbox": {"kind": "local", "permissions": {"write_files": "deny", "network": "ask"}}}
    kit = {"sandbox": {"permissions": {"write_files": "allow", "execute_code": "allow"}}}
    effective, overrides = merge(template, kit)
    assert effective["sandbox"] == {
        "kind": "local",
        "permissions": {"write_files": "allow", "network": "ask", "execute_code": "allow"},
    }
    assert overrides == [{"path": "sandbox.permissions.write_files", "user_value": "deny", "kit_value": "allow"}]


def test_nested_objects_merge_at_every_level():
    template = {"llm": {"model": "m", "extras": {"a": {"b": 1, "c": 2}}}}
    kit = {"llm": {"extras": {"a": {"c": 3, "d": 4}, "e": 5}}}
    effective, overrides = merge(template, kit)
    assert effective["llm"] == {"model": "m", "extras": {"a": {"b": 1, "c": 3, "d": 4}, "e": 5}}
    assert overrides == [{"path": "llm.extras.a.c", "user_value": 2, "kit_value": 3}]


def test_arrays_inside_objects_are_replaced_not_merged():
    template = {"harness": {"permissions": {"allow": ["read", "grep"], "deny": ["bash"]}}}
    kit = {"harness": {"permissions": {"allow": ["write"]}}}
    effective, overrides = merge(template, kit)
    assert effective["harness"]["permissions"] == {"allow": ["write"], "deny": ["bash"]}
    assert overrides == [{"path": "harness.permissions.allow", "user_value": ["read", "grep"],
                          "kit_value": ["write"]}]


@pytest.mark.parametrize("key", ["sandbox", "runner", "harness", "llm", "instructions"])
def test_every_object_key_deep_merges(key):
    template = {key: {"kept": 1, "changed": "user"}}
    effective, overrides = merge(template, {key: {"changed": "kit", "added": True}})
    assert effective[key] == {"kept": 1, "changed": "kit", "added": True}
    assert overrides == [{"path": f"{key}.changed", "user_value": "user", "kit_value": "kit"}]


def test_a_non_object_user_value_counts_as_empty():
    effective, overrides = merge({"sandbox": "none"}, {"sandbox": {"permissions": {"write_files": "allow"}}})
    assert effective["sandbox"] == {"permissions": {"write_files": "allow"}}
    assert overrides == [{"path": "sandbox", "user_value": "none",
                          "kit_value": {"permissions": {"write_files": "allow"}}}]
    effective, overrides = merge({"sandbox": {"permissions": "all"}},
                                 {"sandbox": {"permissions": {"write_files": "allow"}}})
    assert effective["sandbox"] == {"permissions": {"write_files": "allow"}}
    assert overrides[0]["path"] == "sandbox.permissions"


def test_values_the_user_did_not_set_are_not_overrides():
    effective, overrides = merge({"llm": {"model": "m"}}, build_overlay())
    assert effective["sandbox"]["permissions"] == KIT_SANDBOX_PERMISSIONS
    assert overrides == []


def test_unknown_overlay_keys_are_ignored_and_user_keys_kept():
    template = {"llm": {"model": "m"}, "runner": {"kind": "sidecar"}}
    effective, overrides = merge(template, {"something": {"x": 1}, "tools": "not-a-list"})
    assert effective == template
    assert overrides == []


def test_empty_overlay_returns_an_equal_copy():
    template = {"llm": {"model": "m"}, "tools": [{"type": "platform", "op": "x"}]}
    effective, overrides = merge(template, {})
    assert effective == template and effective is not template
    assert effective["tools"] is not template["tools"]
    assert overrides == []


def test_result_shares_no_objects_with_the_inputs():
    template = {"sandbox": {"permissions": {"write_files": "deny"}}, "tools": [{"type": "platform", "op": "x"}]}
    kit = build_overlay()
    effective, _ = apply_overlay(template, kit)
    effective["sandbox"]["permissions"]["extra"] = "deny"
    effective["tools"][0]["permission"] = "deny"
    effective["tools"][-1]["@ag.embed"]["@ag.references"]["workflow"]["slug"] = "changed"
    assert template == {"sandbox": {"permissions": {"write_files": "deny"}}, "tools": [{"type": "platform", "op": "x"}]}
    assert kit == build_overlay()


def test_the_full_kit_on_a_realistic_template():
    template = {
        "instructions": {"agents_md": "x"},
        "llm": {"model": "m"},
        "tools": [
            {"type": "client", "name": "mine", "input_schema": {}},
            {"type": "platform", "op": "spawn_agent", "permission": "deny"},
        ],
        "skills": [{"name": "style", "content": "be brief"}],
        "sandbox": {"permissions": {"write_files": "deny", "execute_code": "allow"}},
    }
    effective, overrides = merge(template, build_overlay())
    assert effective["tools"][0] == template["tools"][0]
    assert effective["tools"][1] == {"type": "platform", "op": "spawn_agent", "permission": "ask"}
    kit_ops = [op for op in platform_ops().values() if op.in_build_kit]
    assert len(effective["tools"]) == 2 + (len(kit_ops) - 1) + 2
    assert effective["skills"] == [
        {"name": "style", "content": "be brief"}, {"name": "Getting started", **embed("__sx__getting_started")},
    ]
    assert effective["sandbox"]["permissions"] == {"write_files": "allow", "execute_code": "allow"}
    assert overrides == [
        {"path": "tools.1.permission", "user_value": "deny", "kit_value": "ask"},
        {"path": "sandbox.permissions.write_files", "user_value": "deny", "kit_value": "allow"},
    ]


def test_overlay_module_has_no_database_access(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        apply_overlay({"llm": {"model": "m"}}, overlay_module.build_overlay())
