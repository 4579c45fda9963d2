"""llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``, same arguments) with one more chat
format: ``chatml-function-calling-results``.

It is llama-cpp-python's ``chatml-function-calling`` — the format that lets a model without a tool-calling template
of its own call tools (the tools go into the system prompt, each call's arguments are constrained by a grammar built
from its JSON Schema) — except that it shows the model the results of its calls. The stock format renders a
``tool`` message as an empty turn (its template has no branch for the role), so the model never sees what a tool
returned and tends to call the same tool again. Here each ``tool`` message is shown as a user turn: "Result of
<tool>: <content>". Everything else is llama-cpp-python's own code.
"""

from __future__ import annotations

from typing import Any

from llama_cpp import llama_chat_format
from llama_cpp.server.__main__ import main

FORMAT = "chatml-function-calling-results"
#: How a tool result is shown to the model.
RESULT = "The function {name} returned: {content}\nIf that completes the task, answer with a message."


def _shown(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = {
        call.get("id"): call.get("function", {}).get("name", "the tool")
        for message in messages if message.get("role") == "assistant"
        for call in message.get("tool_calls") or []
    }
    return [
        {"role": "user", "content": RESULT.format(name=names.get(m.get("tool_call_id"), "the tool"),
                                                  content=m.get("content"))}
        if m.get("role") == "tool" else m
        for m in messages
    ]


@llama_chat_format.register_chat_completion_handler(FORMAT)
def chatml_function_calling_results(llama, messages, **kwargs):
    """``chatml_function_calling`` with each ``tool`` message shown as a user turn naming the tool."""
    return llama_chat_format.chatml_function_calling(llama, _shown(messages), **kwargs)


if __name__ == "__main__":
    main()
