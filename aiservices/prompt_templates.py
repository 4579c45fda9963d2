"""Prompt templates: their shape, their ``{{variable}}`` tokens and what a refinement may change.

A prompt template is a JSON object with a non-empty ``messages`` list of ``{role, content}``
(role ∈ system | developer | user | assistant, content a string) and, optionally,
``template_format``, ``input_keys`` and ``llm_config`` (agenta-contracts.md A4/A8). A refinement
may rewrite message contents only: it must keep the message count, the roles in order, every
variable token of each message, and must not introduce a variable the template did not have. The
upstream's own prompt asks for the same, but nothing it returns is trusted (stricter than A8).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .validation import schema_problems

ROLES = ("system", "developer", "user", "assistant")
#: Most levels of nested objects and lists a template may have (the template object itself is 1).
MAX_NESTING = 64

#: Shape of an input template. Extra keys are allowed (and kept) at the top level and in messages.
TEMPLATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["messages"],
    "properties": {
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {"role": {"type": "string", "enum": list(ROLES)}, "content": {"type": "string"}},
            },
        },
        "template_format": {"type": "string"},
        "input_keys": {"type": "array", "items": {"type": "string"}},
        "llm_config": {"type": "object"},
    },
}

#: The refined result (the tool's ``outputSchema``; also the strict response format sent upstream).
OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["messages", "summary"],
    "properties": {
        "messages": {
            "type": "array",
            "description": "The refined messages: same count, same roles in the same order, same variables.",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["role", "content"],
                "properties": {
                    "role": {"type": "string", "enum": list(ROLES), "description": "Must match the original."},
                    "content": {"type": "string"},
                },
            },
        },
        "summary": {"type": "string", "description": "What changed, in a sentence or two."},
    },
}

#: ``{{ name }}`` tokens (curly template format); the name is compared without surrounding spaces.
VARIABLE = re.compile(r"\{\{\s*([^{}\s](?:[^{}]*?[^{}\s])?)\s*\}\}")


def variables(text: str) -> list[str]:
    """The distinct variable names in ``text``, in order of first appearance."""
    seen: dict[str, None] = {}
    for match in VARIABLE.finditer(text):
        seen.setdefault(match.group(1), None)
    return list(seen)


def _tokens(names) -> str:
    return ", ".join("{{" + name + "}}" for name in names)


def nesting_depth(value: Any) -> int:
    """Levels of nested objects and arrays in ``value`` (a scalar is 0, ``{}`` and ``[]`` are 1).

    Walks iteratively, so no nesting can exhaust the stack.
    """
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def parse_template(text: str, *, field: str) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
    """Parse and check a JSON prompt template.

    Returns ``(template, [])`` when it is valid, else ``(None, problems)`` with ``(field, message)``
    pairs rooted at ``field`` (``arguments.prompt_template_json.messages.1.role``). JSON nested
    deeper than ``MAX_NESTING`` levels is refused (whether or not the parser could read it), so
    nothing downstream (schema checks, the upstream request, pretty-printing) can run out of stack.
    """
    try:
        template = json.loads(text)
    except RecursionError:
        return None, [(field, f"Nested too deeply: at most {MAX_NESTING} levels of objects and lists.")]
    except ValueError as exc:
        return None, [(field, f"Not valid JSON: {exc}.")]
    if nesting_depth(template) > MAX_NESTING:
        return None, [(field, f"Nested too deeply: at most {MAX_NESTING} levels of objects and lists.")]
    if not isinstance(template, dict):
        return None, [(field, "Must be a JSON object with a 'messages' list.")]
    problems = schema_problems(TEMPLATE_SCHEMA, template, prefix=field)
    return (None, problems) if problems else (template, [])


@dataclass(frozen=True)
class Refinement:
    """A checked refinement: ``messages`` (``[{role, content}]``) and ``summary`` (``None`` if absent)."""

    messages: list[dict[str, str]]
    summary: str | None


class RefinementRejected(Exception):
    """The upstream's output is malformed or changed what it must keep; ``problems`` lists what."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def check_refinement(original: list[dict[str, Any]], output: Any) -> Refinement:
    """Check an upstream ``output`` against the ``original`` messages and return the clean result.

    Raises:
        RefinementRejected: with one sentence per problem: malformed output (not an object, no
            messages, a message without a string role/content, a summary that is not a string), a
            different message count, a changed role, a variable dropped from a message, a variable
            the template did not have, or a message emptied.
    """
    if not isinstance(output, dict) or not isinstance(output.get("messages"), list) or not output["messages"]:
        raise RefinementRejected(["The refined output has no 'messages' list."])
    refined = output["messages"]
    shape = [
        f"Refined message {i + 1} is not an object with string 'role' and 'content'."
        for i, message in enumerate(refined)
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str))
    ]
    summary = output.get("summary")
    if summary is not None and not isinstance(summary, str):
        shape.append("The refined output's 'summary' is not a string.")
    if shape:
        raise RefinementRejected(shape)

    problems: list[str] = []
    if len(refined) != len(original):
        problems.append(f"The refined template has {len(refined)} messages; the original has {len(original)}.")
    for i, (before, after) in enumerate(zip(original, refined, strict=False)):
        if after["role"] != before["role"]:
            problems.append(f"Message {i + 1} changed role from '{before['role']}' to '{after['role']}'.")
    for i, after in enumerate(refined):
        if after["role"] not in ROLES:
            problems.append(f"Refined message {i + 1} has the unknown role '{after['role']}'.")
    known = {name for message in original for name in variables(message["content"])}
    for i, (before, after) in enumerate(zip(original, refined, strict=False)):
        dropped = [name for name in variables(before["content"]) if name not in set(variables(after["content"]))]
        if dropped:
            problems.append(f"Message {i + 1} ({before['role']}) dropped {_tokens(dropped)}.")
        if before["content"].strip() and not after["content"].strip():
            problems.append(f"Message {i + 1} ({before['role']}) is empty in the refined template.")
    added = [name for message in refined for name in variables(message["content"]) if name not in known]
    if added:
        new = _tokens(dict.fromkeys(added))
        problems.append(f"The refined template adds variables the original does not have: {new}.")
    if problems:
        raise RefinementRejected(problems)
    messages = [{"role": m["role"], "content": m["content"]} for m in refined]
    return Refinement(messages=messages, summary=summary.strip() if summary and summary.strip() else None)


def refined_template(template: dict[str, Any], messages: list[dict[str, str]]) -> dict[str, Any]:
    """``template`` with its message contents replaced by ``messages`` (everything else kept)."""
    return {
        **template,
        "messages": [{**before, "content": after["content"]} for before, after in zip(template["messages"], messages,
                                                                                       strict=True)],
    }
