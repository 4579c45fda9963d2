"""What the real OpenAI-compatible servers refuse, as the strict test server (``tests/runtime/harness.StubLLM``)
refuses it: each request the runtime sends is checked here, and a request one of them would refuse is answered
the way that server answers it.

Each rule names the server it comes from (llama-cpp-python 0.3 with ``--chat_format chatml-function-calling``,
llama.cpp's grammar compiler, OpenAI, vLLM, Gemini behind LiteLLM):

- ``X-Request-ID`` must be a UUID (llama-cpp-python: 400 with an empty body);
- every message's ``content`` must be text, an assistant's beside ``tool_calls`` too (llama-cpp-python: 500, a
  pydantic validation error for ``null``, a template error when it is left out);
- a ``tool`` message answers a tool call of an earlier assistant message (OpenAI: 400);
- ``tools`` need ``tool_choice`` (chatml-function-calling leaves the tools out of the prompt without it: refused
  here so that the omission shows), and ``tool_choice`` needs ``tools`` (OpenAI: 400);
- tool parameters must be portable (``schema_problems``): typed enums, no large ``maxLength``/``maxItems``
  (llama.cpp compiles them into grammar rules that grow with the limit), no ``format`` but ``date-time``, no type
  unions, no empty ``required`` (Gemini), and an object at the root (OpenAI).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

#: The largest ``maxLength`` / ``maxItems`` a grammar compiler takes without a rule that grows out of bounds.
MAX_INLINE_LIMIT = 64
_TYPES = {"string", "number", "integer", "boolean", "object", "array", "null"}


def schema_problems(schema: Any, path: str = "parameters") -> list[str]:
    """Why ``schema`` (a tool's ``parameters``) is not portable: one line per problem, empty when it is."""
    problems: list[str] = []
    if not isinstance(schema, dict):
        return [f"{path}: not a schema object"]
    if path == "parameters" and schema.get("type") != "object":
        problems.append(f"{path}: the root must be an object schema")
    kind = schema.get("type")
    if isinstance(kind, list):
        problems.append(f"{path}.type: a type union {kind}")
    elif kind is not None and kind not in _TYPES:
        problems.append(f"{path}.type: unknown type {kind!r}")
    if "enum" in schema and "type" not in schema:
        problems.append(f"{path}.enum: an enum without a type")
    for limit in ("maxLength", "maxItems"):
        if schema.get(limit, 0) > MAX_INLINE_LIMIT:
            problems.append(f"{path}.{limit}: {schema[limit]} (a grammar rule that grows with it)")
    if schema.get("format") not in (None, "date-time"):
        problems.append(f"{path}.format: {schema['format']!r}")
    if "required" in schema and not schema["required"]:
        problems.append(f"{path}.required: empty")
    for key in ("properties", "$defs"):
        for name, sub in (schema.get(key) or {}).items():
            problems += schema_problems(sub, f"{path}.{key}.{name}")
    if isinstance(schema.get("items"), dict):
        problems += schema_problems(schema["items"], f"{path}.items")
    for key in ("anyOf", "oneOf", "allOf"):
        for n, sub in enumerate(schema.get(key) or []):
            if not isinstance(sub, dict) or ("type" not in sub and "$ref" not in sub):
                problems.append(f"{path}.{key}.{n}: an alternative that is not a complete schema")
            else:
                problems += schema_problems(sub, f"{path}.{key}.{n}")
    return problems


def _error(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind}}


def refusal(body: Any, headers: dict[str, str]) -> tuple[int, bytes] | None:
    """``(status, body)`` of the answer a real server gives this request, or ``None`` when every one takes it."""
    request_id = next((v for k, v in headers.items() if k.lower() == "x-request-id"), None)
    if request_id is not None:
        try:
            uuid.UUID(request_id)
        except ValueError:
            return 400, b""
    if not isinstance(body, dict):
        return 400, json.dumps(_error("The body is not a JSON object.")).encode()
    if not isinstance(body.get("model"), str) or not body["model"]:
        return 400, json.dumps(_error("'model' is required.")).encode()
    problem = _message_problem(body.get("messages"))
    if problem is not None:
        return problem
    if "stream_options" in body and body.get("stream") is not True:
        return 400, json.dumps(_error("'stream_options' is only allowed when 'stream' is true.")).encode()
    tools = body.get("tools")
    if tools and "tool_choice" not in body:
        return 400, json.dumps(_error(
            "tools were sent without tool_choice: chatml-function-calling leaves them out of the prompt."
        )).encode()
    if "tool_choice" in body and not tools:
        return 400, json.dumps(_error("'tool_choice' is only allowed when 'tools' are specified.")).encode()
    for n, tool in enumerate(tools or []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not function.get("name"):
            return 400, json.dumps(_error(f"tools[{n}] is not a function.")).encode()
        problems = schema_problems(function.get("parameters", {}))
        if problems:
            return 400, json.dumps(_error(f"tools[{n}] ({function['name']}): {'; '.join(problems)}")).encode()
    return None


def _message_problem(messages: Any) -> tuple[int, bytes] | None:
    if not isinstance(messages, list) or not messages:
        return 400, json.dumps(_error("'messages' must be a non-empty list.")).encode()
    called: set[str] = set()
    for n, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("system", "user", "assistant", "tool"):
            return 400, json.dumps(_error(f"messages[{n}]: unknown role {role!r}.")).encode()
        if "content" not in message:
            # llama-cpp-python's chatml templates read message.content of every message.
            return 500, json.dumps(_error("'dict object' has no attribute 'content'", "internal_server_error")).encode()
        if not isinstance(message["content"], str):
            # llama-cpp-python's pydantic request models: content is a string, beside tool_calls too.
            detail = {"type": "string_type", "loc": ("body", "messages", n, "content"),
                      "msg": "Input should be a valid string", "input": message["content"]}
            text = f"1 validation error:\n  {detail}"
            return 500, json.dumps(_error(text, "internal_server_error")).encode()
        if role == "assistant":
            called |= {call.get("id") for call in message.get("tool_calls") or [] if isinstance(call, dict)}
        if role == "tool" and message.get("tool_call_id") not in called:
            return 400, json.dumps(_error(
                f"messages[{n}]: a message with role 'tool' must be a response to a preceding 'tool_calls'."
            )).encode()
    return None
