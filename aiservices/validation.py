"""JSON Schema checks that report each problem with its field, in words people understand."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

_TYPE_NAMES = {
    "string": "a string",
    "object": "an object",
    "array": "a list",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _path(prefix: str, parts) -> str:
    return ".".join([prefix, *(str(p) for p in parts)]) if prefix else ".".join(str(p) for p in parts)


def _describe_type(expected: Any) -> str:
    if isinstance(expected, list):
        return " or ".join(_TYPE_NAMES.get(t, t) for t in expected)
    return _TYPE_NAMES.get(expected, str(expected))


def schema_problems(schema: dict[str, Any], instance: Any, *, prefix: str) -> list[tuple[str, str]]:
    """Validate ``instance`` against ``schema`` (draft 2020-12); return ``(field, message)`` pairs.

    ``field`` is ``prefix`` plus the dotted path of the offending value (``arguments.guidelines``,
    ``arguments.prompt_template_json.messages.0.role``); a missing or unexpected key is reported at
    its own path. Problems are sorted by field so the order is stable.
    """
    problems: list[tuple[str, str]] = []
    for error in Draft202012Validator(schema).iter_errors(instance):
        here = list(error.absolute_path)
        value = error.instance
        if error.validator == "required":
            for key in error.validator_value:
                if isinstance(value, dict) and key not in value:
                    problems.append((_path(prefix, [*here, key]), "This field is required."))
        elif error.validator == "additionalProperties" and isinstance(value, dict):
            allowed = sorted(error.schema.get("properties", {}))
            for key in sorted(set(value) - set(allowed)):
                expected = f" Expected only: {', '.join(allowed)}." if allowed else ""
                problems.append((_path(prefix, [*here, key]), f"Unexpected field.{expected}"))
        elif error.validator == "type":
            problems.append((_path(prefix, here), f"Must be {_describe_type(error.validator_value)}."))
        elif error.validator == "maxLength":
            problems.append(
                (_path(prefix, here), f"Must be at most {error.validator_value} characters (it has {len(value)}).")
            )
        elif error.validator == "minLength":
            problems.append((_path(prefix, here), "Must not be empty." if error.validator_value == 1
                             else f"Must be at least {error.validator_value} characters."))
        elif error.validator == "minItems":
            problems.append((_path(prefix, here), "Must not be empty." if error.validator_value == 1
                             else f"Must hold at least {error.validator_value} items."))
        elif error.validator == "enum":
            choices = ", ".join(str(v) for v in error.validator_value)
            problems.append((_path(prefix, here), f"'{value}' is not one of: {choices}."))
        else:
            problems.append((_path(prefix, here), error.message))
    return sorted(problems, key=lambda p: p[0])
