"""The @ag.embed resolver: references, selectors, misses, cycles, limits and error policies."""

from __future__ import annotations

import copy
import json

import pytest

from buildkit import embed as embed_module
from buildkit import services
from buildkit.catalog import STATIC_CATALOG
from buildkit.embed import (
    CircularEmbed,
    EmbedDepthExceeded,
    EmbedLimitExceeded,
    EmbedNotFound,
    EmbedSelectorMiss,
    InvalidEmbed,
    NonEmbeddableReference,
    resolve_embeds,
    resolve_reference,
)
from buildkit.overlay import build_overlay
from tests import factories
from tests.buildkit.conftest import embed

pytestmark = pytest.mark.django_db


@pytest.fixture
def make_type(commit):
    """``make_type(slug, *templates)`` → an agent type with one revision per template."""

    def make(slug, *templates):
        agent_type = factories.AgentTypeFactory(slug=slug)
        for template in templates:
            commit(agent_type, template)
        return agent_type

    return make


def llm(**extra):
    return {"llm": {"model": "m"}, **extra}


# --- what an embed resolves to ----------------------------------------------------------------

def test_static_skill_embed_is_replaced_by_the_catalog_document():
    result = resolve_embeds({"skills": [embed("__sx__getting_started")]})
    assert result.value == {"skills": [STATIC_CATALOG["__sx__getting_started"].document()]}
    assert result.references_used == [{"slug": "__sx__getting_started", "version": 1, "source": "static"}]
    assert (result.depth_reached, result.embeds_resolved, result.errors) == (1, 1, [])


@pytest.mark.parametrize("version", [1, "1", "v1", "V1"])
def test_static_versions_1_v1_and_1_are_the_same(version):
    result = resolve_embeds({"tools": [embed("__sx__request_input", version)]})
    assert result.value["tools"][0]["name"] == "request_input"


def test_the_whole_embed_object_is_replaced_and_siblings_dropped():
    node = embed("__sx__request_input")
    node["name"] = "display only"
    result = resolve_embeds({"tools": [node]})
    assert "display only" not in str(result.value)


def test_latest_revision_of_an_agent_type(make_type):
    make_type("helper", llm(instructions={"agents_md": "one"}), llm(instructions={"agents_md": "two"}))
    result = resolve_embeds({"x": embed("helper")})
    assert result.value["x"]["instructions"] == {"agents_md": "two"}
    assert result.references_used == [{"slug": "helper", "version": 2, "source": "agent_type"}]


@pytest.mark.parametrize("version", [1, "1", "v1"])
def test_pinned_revision_of_an_agent_type(make_type, version):
    make_type("helper", llm(instructions={"agents_md": "one"}), llm(instructions={"agents_md": "two"}))
    result = resolve_embeds({"x": embed("helper", version)})
    assert result.value["x"]["instructions"] == {"agents_md": "one"}
    assert result.references_used[0]["version"] == 1


def test_selector_picks_a_dotted_path_with_list_positions(make_type):
    make_type("helper", llm(tools=[{"type": "client", "name": "ask", "input_schema": {}}]))
    result = resolve_embeds({"tools": [embed("helper", path="tools.0"), embed("helper", path="tools.0.name")]})
    assert result.value["tools"] == [{"type": "client", "name": "ask", "input_schema": {}}, "ask"]


def test_nested_embeds_resolve_depth_first(make_type):
    make_type("leaf", llm(skills=[embed("__sx__getting_started")]))
    make_type("middle", llm(tools=[embed("leaf", path="skills")]))
    result = resolve_embeds({"a": embed("middle", path="tools.0")})
    assert result.value["a"] == [STATIC_CATALOG["__sx__getting_started"].document()]
    assert result.depth_reached == 3
    assert result.embeds_resolved == 3
    assert [r["slug"] for r in result.references_used] == ["middle", "leaf", "__sx__getting_started"]


def test_the_input_is_never_changed(make_type):
    make_type("helper", llm())
    document = {"a": [embed("helper")], "b": {"c": embed("__sx__request_input")}}
    before = copy.deepcopy(document)
    resolve_embeds(document)
    assert document == before


def test_resolved_documents_are_copies(make_type):
    make_type("helper", llm(tools=[{"type": "client", "name": "ask", "input_schema": {}}]))
    result = resolve_embeds({"a": embed("helper"), "b": embed("helper")})
    result.value["a"]["tools"].clear()
    assert result.value["b"]["tools"]
    assert result.references_used == [{"slug": "helper", "version": 1, "source": "agent_type"}]


def test_one_query_per_distinct_agent_type_reference(make_type, django_assert_num_queries):
    make_type("one", llm())
    make_type("two", llm())
    document = {"a": [embed("one"), embed("one"), embed("two"), embed("__sx__request_input")]}
    with django_assert_num_queries(2):
        result = resolve_embeds(document)
    assert result.embeds_resolved == 4


def test_the_build_kit_overlay_resolves_without_errors():
    result = resolve_embeds(build_overlay())
    assert result.errors == []
    names = [t.get("name") for t in result.value["tools"] if t.get("type") == "client"]
    assert names == ["request_connection", "request_input"]


# --- misses ---------------------------------------------------------------------------------

def test_unknown_agent_type_is_a_miss_with_its_path():
    with pytest.raises(EmbedNotFound) as info:
        resolve_embeds({"tools": [{}, embed("nobody")]})
    assert info.value.path == "template.tools.1"
    assert info.value.code == "embed_not_found"
    assert info.value.reference == "workflow:nobody"


def test_agent_type_without_revisions_is_a_miss():
    factories.AgentTypeFactory(slug="empty")
    with pytest.raises(EmbedNotFound):
        resolve_embeds({"x": embed("empty")})


def test_unknown_version_is_a_miss(make_type):
    make_type("helper", llm())
    with pytest.raises(EmbedNotFound) as info:
        resolve_embeds({"x": embed("helper", 7)})
    assert "version 7" in info.value.message


def test_unknown_static_slug_never_falls_through_to_the_database(django_assert_num_queries):
    with django_assert_num_queries(0), pytest.raises(EmbedNotFound):
        resolve_embeds({"x": embed("__sx__nothing")})


def test_unknown_static_version_is_a_miss():
    with pytest.raises(EmbedNotFound):
        resolve_embeds({"x": embed("__sx__request_input", "v2")})


def test_selector_miss_is_a_miss_with_its_own_type(make_type):
    make_type("helper", llm())
    with pytest.raises(EmbedSelectorMiss) as info:
        resolve_embeds({"x": embed("helper", path="tools.3")})
    assert isinstance(info.value, EmbedNotFound)
    assert info.value.path == "template.x"


@pytest.mark.parametrize(
    "node",
    [
        {"@ag.embed": "helper"},
        {"@ag.embed": {"@ag.references": {}}},
        {"@ag.embed": {"@ag.references": {"workflow": {"slug": "a"}, "environment": {"slug": "b"}}}},
        {"@ag.embed": {"@ag.references": {"workflow": {"id": "x"}}}},
        {"@ag.embed": {"@ag.references": {"workflow": {"slug": "a", "version": "latest"}}}},
        {"@ag.embed": {"@ag.references": {"workflow": {"slug": "a"}}, "@ag.selector": {"key": "x"}}},
        {"@ag.embed": {"@ag.references": {"workflow": {"slug": "a"}}, "extra": 1}},
    ],
)
def test_malformed_embeds_are_invalid(node):
    with pytest.raises(InvalidEmbed):
        resolve_embeds({"x": node})


# --- non-embeddable -----------------------------------------------------------------------------

def test_build_kit_cannot_be_embedded():
    with pytest.raises(NonEmbeddableReference) as info:
        resolve_embeds({"tools": [embed("__sx__build_kit")]})
    assert info.value.path == "template.tools.0"


def test_build_kit_can_be_fetched_by_reference():
    result = resolve_reference("__sx__build_kit")
    assert [t.get("op") for t in result.value["tools"][:2]] == ["query_agents", "read_context"]
    assert result.value["skills"][0]["name"] == "syndarix-getting-started"
    assert result.references_used[0] == {"slug": "__sx__build_kit", "version": 1, "source": "static"}


# --- cycles -----------------------------------------------------------------------------------

def test_self_embed_is_a_cycle(make_type):
    make_type("loop", llm(tools=[embed("loop")]))
    with pytest.raises(CircularEmbed) as info:
        resolve_embeds({"x": embed("loop")})
    assert info.value.path == "template.x.tools.0"
    assert info.value.extra["cycle"] == ["agent_type:loop:v1", "agent_type:loop:v1"]


def test_indirect_cycle_through_latest_and_pinned_references(make_type):
    a = make_type("a", llm())
    make_type("b", llm(tools=[embed("a", 2)]))
    services.template_commit(agent_type=a, template=llm(tools=[embed("b")]))
    with pytest.raises(CircularEmbed) as info:
        resolve_embeds({"root": embed("a")})
    assert info.value.extra["cycle"] == ["agent_type:a:v2", "agent_type:b:v1", "agent_type:a:v2"]


def test_same_reference_in_sibling_branches_is_not_a_cycle(make_type):
    make_type("shared", llm())
    make_type("user", llm(tools=[embed("shared")], skills=[embed("shared")]))
    result = resolve_embeds({"x": embed("user")})
    assert result.embeds_resolved == 3


def test_fetching_a_document_that_embeds_itself_is_a_cycle(make_type):
    make_type("loop", llm(tools=[embed("loop")]))
    with pytest.raises(CircularEmbed):
        resolve_reference("loop")


def test_other_versions_of_the_same_type_are_not_a_cycle(make_type):
    agent_type = make_type("evolving", llm(instructions={"agents_md": "v1"}))
    services.template_commit(agent_type=agent_type, template=llm(tools=[embed("evolving", 1, "instructions")]))
    result = resolve_embeds({"x": embed("evolving")})
    assert result.value["x"]["tools"] == [{"agents_md": "v1"}]


# --- limits -----------------------------------------------------------------------------------

@pytest.fixture
def chain(make_type):
    """``chain(n)``: types c1 → c2 → ... → cn, each embedding the next; returns the top embed."""

    def make(n):
        make_type(f"c{n}", llm(instructions={"agents_md": "bottom"}))
        for i in range(n - 1, 0, -1):
            make_type(f"c{i}", llm(tools=[embed(f"c{i + 1}")]))
        return embed("c1")

    return make


def test_depth_ten_is_allowed(chain):
    result = resolve_embeds({"x": chain(10)})
    assert result.depth_reached == 10


def test_depth_eleven_is_refused_where_it_happens(chain):
    with pytest.raises(EmbedDepthExceeded) as info:
        resolve_embeds({"x": chain(11)})
    assert info.value.path == "template.x" + ".tools.0" * 10
    assert info.value.extra["limit"] == 10


def test_max_depth_can_be_lowered(chain):
    with pytest.raises(EmbedDepthExceeded):
        resolve_embeds({"x": chain(3)}, max_depth=2)


def test_one_hundred_embeds_are_allowed_and_the_hundred_and_first_refused():
    assert resolve_embeds({"t": [embed("__sx__request_input")] * 100}).embeds_resolved == 100
    with pytest.raises(EmbedLimitExceeded) as info:
        resolve_embeds({"t": [embed("__sx__request_input")] * 101})
    assert info.value.path == "template.t.100"


def test_nested_embeds_count_toward_the_limit(make_type):
    extras = {f"e{i}": embed("__sx__request_input") for i in range(5)}
    make_type("five", {"llm": {"model": "m", "extras": extras}})
    with pytest.raises(EmbedLimitExceeded):
        resolve_embeds({"t": [embed("five")] * 3}, max_embeds=17)
    assert resolve_embeds({"t": [embed("five")] * 3}, max_embeds=18).embeds_resolved == 18


def test_embedded_documents_are_bounded_in_size(make_type):
    """100 embeds of a large stored template would build an answer 100 times its size: the embedded bytes of one
    resolution are capped (``MAX_EMBEDDED_BYTES``), with the path of the embed that went over."""
    template = {"llm": {"model": "m"}, "instructions": {"agents_md": "x" * 190_000}}
    make_type("bulky", template)
    fit = embed_module.MAX_EMBEDDED_BYTES // len(json.dumps(template, separators=(",", ":")))
    assert resolve_embeds({"t": [embed("bulky")] * fit}).embeds_resolved == fit
    with pytest.raises(embed_module.EmbedSizeExceeded) as caught:
        resolve_embeds({"t": [embed("bulky")] * (fit + 1)})
    assert (caught.value.code, caught.value.path, caught.value.extra["limit"]) == (
        "embed_too_large", f"template.t.{fit}", embed_module.MAX_EMBEDDED_BYTES)
    resolution = resolve_embeds({"t": [embed("bulky")] * (fit + 1)}, error_policy="placeholder")
    assert resolution.value["t"][fit] == "<error:EmbedSizeExceeded>" and len(resolution.errors) == 1


def test_limits_cannot_be_raised_above_the_platform_caps():
    with pytest.raises(EmbedLimitExceeded):
        resolve_embeds({"t": [embed("__sx__request_input")] * 101}, max_embeds=1000)


# --- error policies ---------------------------------------------------------------------------

DOCUMENT = {"tools": [embed("__sx__request_input"), embed("nobody"), embed("__sx__build_kit")]}


def test_policy_exception_raises_the_first_error():
    with pytest.raises(EmbedNotFound):
        resolve_embeds(DOCUMENT, error_policy="exception")


def test_policy_placeholder_writes_the_error_type_and_goes_on():
    result = resolve_embeds(DOCUMENT, error_policy="placeholder")
    assert result.value["tools"][0]["name"] == "request_input"
    assert result.value["tools"][1:] == ["<error:EmbedNotFound>", "<error:NonEmbeddableReference>"]
    assert [(e["type"], e["path"]) for e in result.errors] == [
        ("EmbedNotFound", "template.tools.1"),
        ("NonEmbeddableReference", "template.tools.2"),
    ]
    assert result.embeds_resolved == 1


def test_policy_keep_leaves_the_embed_and_goes_on():
    result = resolve_embeds(DOCUMENT, error_policy="keep")
    assert result.value["tools"][1:] == DOCUMENT["tools"][1:]
    assert [e["code"] for e in result.errors] == ["embed_not_found", "non_embeddable_reference"]


@pytest.mark.parametrize(("policy", "expected"), [("placeholder", "<error:CircularEmbed>"), ("keep", None)])
def test_policies_apply_to_cycles_and_limits(make_type, policy, expected):
    make_type("loop", llm(tools=[embed("loop")]))
    result = resolve_embeds({"x": embed("loop")}, error_policy=policy)
    inner = result.value["x"]["tools"][0]
    assert inner == (expected if expected else embed("loop"))
    assert result.errors[0]["type"] == "CircularEmbed"
    result = resolve_embeds({"t": [embed("__sx__request_input")] * 3}, max_embeds=2, error_policy=policy)
    assert result.errors[0]["type"] == "EmbedLimitExceeded"
    assert result.embeds_resolved == 2


def test_unknown_policy_is_refused():
    from syndarix.exceptions import InvalidInput

    with pytest.raises(InvalidInput):
        resolve_embeds({}, error_policy="ignore")


def test_errors_have_distinct_types_and_codes():
    classes = [InvalidEmbed, EmbedNotFound, EmbedSelectorMiss, CircularEmbed, EmbedDepthExceeded,
               EmbedLimitExceeded, NonEmbeddableReference, embed_module.EmbedNestingExceeded]
    assert len({c.code for c in classes}) == len(classes)
    assert all(issubclass(c, embed_module.EmbedError) and c.status_code == 400 for c in classes)


# --- the resolved document stays within the template nesting limit ----------------------------

def nest(value, levels):
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.fixture
def deep_chain(make_type):
    """t0 → t1 → ... → t10, each embedding the next 56 levels down: every template is valid on its own,
    but resolved they would nest some 600 levels deep."""
    make_type("t10", {"llm": {"model": "m", "extras": nest("leaf", 55)}})
    for i in range(9, -1, -1):
        make_type(f"t{i}", {"llm": {"model": "m", "extras": nest(embed(f"t{i + 1}"), 55)}})


def test_a_resolution_that_would_nest_too_deep_is_refused_where_it_happens(deep_chain):
    with pytest.raises(embed_module.EmbedNestingExceeded) as info:
        resolve_reference("t0")
    error = info.value
    assert error.code == "embed_nesting_exceeded" and error.status_code == 400
    assert error.path.startswith("template.llm.extras.a.a") and error.extra["limit"] == 64


def test_the_nesting_limit_follows_the_error_policy(deep_chain):
    resolution = resolve_reference("t0", error_policy="placeholder")
    assert "<error:EmbedNestingExceeded>" in str(resolution.value)
    assert resolution.errors[0]["code"] == "embed_nesting_exceeded"


def test_a_deep_chain_through_the_api_is_400_not_500(deep_chain, owner_client):
    response = owner_client.post("/api/v1/agent-templates/resolve", {"reference": {"slug": "t0"}}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["errors"][0]["code"] == "embed_nesting_exceeded"


def test_sixty_four_levels_after_resolution_are_allowed(make_type):
    make_type("leafy", {"llm": {"model": "m", "extras": nest("x", 30)}})  # the document is 32 levels deep
    document = nest(embed("leafy"), 32)  # the embed object sits at level 33
    value = resolve_embeds(document).value

    def depth(node):
        return 1 + max((depth(v) for v in node.values()), default=0) if isinstance(node, dict) else 0

    assert depth(value) == 64
    with pytest.raises(embed_module.EmbedNestingExceeded):
        resolve_embeds(nest(embed("leafy"), 33))
