"""Prompt templates: parsing, variables and the refinement rules."""

from __future__ import annotations

import json

import pytest

from aiservices.prompt_templates import (
    MAX_NESTING,
    RefinementRejected,
    check_refinement,
    nesting_depth,
    parse_template,
    refined_template,
    variables,
)

from .conftest import TEMPLATE, TEMPLATE_JSON

F = "arguments.prompt_template_json"


def test_variables_are_distinct_ordered_and_space_insensitive():
    assert variables("{{a}} and {{ b }} and {{a}} and {{  c_1 }} but not {{}} nor { {d} }") == ["a", "b", "c_1"]


def test_a_valid_template_parses():
    template, problems = parse_template(TEMPLATE_JSON, field=F)
    assert problems == []
    assert template == TEMPLATE


def test_unknown_top_level_and_message_keys_are_kept():
    text = json.dumps({"messages": [{"role": "user", "content": "x", "name": "n"}], "tools": []})
    template, problems = parse_template(text, field=F)
    assert problems == [] and template["tools"] == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "{not json",
            [(F, "Not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1).")],
        ),
        ("[]", [(F, "Must be a JSON object with a 'messages' list.")]),
        ("{}", [(f"{F}.messages", "This field is required.")]),
        ('{"messages": []}', [(f"{F}.messages", "Must not be empty.")]),
        ('{"messages": "hi"}', [(f"{F}.messages", "Must be a list.")]),
        (
            '{"messages": [{"role": "bot", "content": 1}, {"content": "x"}], "input_keys": [1], "llm_config": 2, '
            '"template_format": null}',
            [
                (f"{F}.input_keys.0", "Must be a string."),
                (f"{F}.llm_config", "Must be an object."),
                (f"{F}.messages.0.content", "Must be a string."),
                (f"{F}.messages.0.role", "'bot' is not one of: system, developer, user, assistant."),
                (f"{F}.messages.1.role", "This field is required."),
                (f"{F}.template_format", "Must be a string."),
            ],
        ),
    ],
)
def test_malformed_templates_name_each_problem(text, expected):
    template, problems = parse_template(text, field=F)
    assert template is None
    assert problems == expected


def nested_template(depth: int) -> str:
    """A valid template whose ``llm_config`` brings the nesting to ``depth`` levels in all."""
    inner = "[" * (depth - 2) + "]" * (depth - 2)
    return '{"messages": [{"role": "user", "content": "hi"}], "llm_config": {"x": ' + inner + "}}"


NESTED_TOO_DEEPLY = (F, f"Nested too deeply: at most {MAX_NESTING} levels of objects and lists.")


@pytest.mark.parametrize(
    "text",
    ["[" * 50_000 + "]" * 50_000, '{"messages": ' + "[" * 1_500 + "]" * 1_500 + "}", nested_template(65)],
    ids=["beyond-the-parser", "beyond-the-interpreter-limit", "one-level-too-deep"],
)
def test_templates_nested_too_deeply_are_refused(text):
    assert parse_template(text, field=F) == (None, [NESTED_TOO_DEEPLY])


def test_a_template_at_the_nesting_limit_parses():
    template, problems = parse_template(nested_template(MAX_NESTING), field=F)
    assert problems == []
    assert nesting_depth(template) == MAX_NESTING


def test_nesting_depth_is_iterative():
    assert [nesting_depth(v) for v in (1, "x", [], {}, [[]], {"a": [{"b": 1}]})] == [0, 0, 1, 1, 2, 3]
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert nesting_depth(deep) == 100_001


def test_check_refinement_accepts_reworded_content_and_strips_summary():
    output = {
        "messages": [
            {"role": "system", "content": "Expert on {{ country }}."},
            {"role": "user", "content": "Q: {{question}} (about {{country}})"},
        ],
        "summary": "  Tightened.  ",
    }
    refinement = check_refinement(TEMPLATE["messages"], output)
    assert refinement.messages == output["messages"]
    assert refinement.summary == "Tightened."


def test_check_refinement_reports_every_problem_at_once():
    output = {"messages": [{"role": "user", "content": "{{new}}"}]}
    with pytest.raises(RefinementRejected) as excinfo:
        check_refinement(TEMPLATE["messages"], output)
    assert excinfo.value.problems == [
        "The refined template has 1 messages; the original has 2.",
        "Message 1 changed role from 'system' to 'user'.",
        "Message 1 (system) dropped {{country}}.",
        "The refined template adds variables the original does not have: {{new}}.",
    ]


def test_refined_template_keeps_everything_but_the_contents():
    messages = [{"role": "system", "content": "A {{country}}"}, {"role": "user", "content": "B {{question}}"}]
    result = refined_template(TEMPLATE, messages)
    assert result == {**TEMPLATE, "messages": messages}
    assert TEMPLATE["messages"][0]["content"] == "You answer questions about {{country}}."  # not mutated
