"""llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``, same arguments) with one more chat
format for small models without a tool-calling template of their own: ``chatml-function-calling-results``.

It is llama-cpp-python's ``chatml-function-calling`` — the tools go into the system prompt and each call's
arguments are constrained by a grammar built from its JSON Schema — with two changes, both about what happens
after the model called tools:

- the model sees the results: the stock format renders a ``tool`` message as an empty turn (its template has no
  branch for the role), so a model never learns what its tools returned. Here each one is a user turn
  (``RESULT``: the function's name and what it returned);
- the answer to tool results is text (``tool_choice`` ``none`` for that request): one round of tool calls per
  request of the user. A model of a few hundred million parameters does not stop calling tools on its own; a
  larger one served by a tool-calling template (llama.cpp's ``llama-server --jinja``, vLLM, Ollama) decides this
  itself.

Everything else is llama-cpp-python's own code.
"""

from __future__ import annotations

from typing import Any

from llama_cpp import llama_chat_format
from llama_cpp.server.__main__ import main

FORMAT = "chatml-function-calling-results"
#: How a tool result is shown to the model.
RESULT = "The function {name} returned: {content}"


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
    """``chatml_function_calling`` showing tool results as user turns, and answering them in text."""
    if messages and messages[-1].get("role") == "tool":
        kwargs["tool_choice"] = "none"
    return llama_chat_format.chatml_function_calling(llama, _shown(messages), **kwargs)


if __name__ == "__main__":
    main()
