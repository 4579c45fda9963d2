"""Assembling a streamed chat completion (``aiservices.llm.StreamedAnswer``): text pieces, tool-call pieces by
index, the usage of the last chunk, and what is not a chunk."""

from __future__ import annotations

import pytest

from aiservices.exceptions import UpstreamBadResponse, UpstreamStreamBroken
from aiservices.llm import StreamedAnswer, parse_completion


def chunk(delta=None, *, finish=None, usage=None, choices=True):
    body = {"id": "c1", "object": "chat.completion.chunk", "model": "m"}
    body["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}] if choices else []
    if usage:
        body["usage"] = usage
    return body


def test_text_pieces_go_to_on_delta_and_assemble_into_the_answer_with_its_usage():
    pieces = []
    answer = StreamedAnswer(pieces.append)
    for part in ("Hel", "lo", ""):
        answer.add(chunk({"content": part}))
    answer.add(chunk(finish="stop"))
    answer.add(chunk(choices=False, usage={"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}))
    assert pieces == ["Hel", "lo"]
    completion = parse_completion(answer.completion(), asked_model="m")
    assert completion.content == "Hello" and completion.finish_reason == "stop"
    assert (completion.prompt_tokens, completion.completion_tokens) == (12, 3)


def test_tool_call_pieces_assemble_by_index():
    answer = StreamedAnswer(None)
    answer.add(chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                      "function": {"name": "read_context", "arguments": ""}}]}))
    answer.add(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"name": '}}]}))
    answer.add(chunk({"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "x", "arguments": "{}"}}]}))
    answer.add(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"notes"}'}}]}, finish="tool_calls"))
    completion = parse_completion(answer.completion(), asked_model="m")
    calls = completion.tool_calls
    assert [c["id"] for c in calls] == ["call_1", "call_2"]
    assert calls[0]["function"] == {"name": "read_context", "arguments": '{"name": "notes"}'}
    assert completion.finish_reason == "tool_calls"


def test_what_is_not_a_chunk_is_a_bad_response():
    with pytest.raises(UpstreamBadResponse):
        StreamedAnswer(None).add(["not", "an", "object"])
    with pytest.raises(UpstreamStreamBroken, match="overloaded"):
        StreamedAnswer(None).add({"error": {"message": "overloaded"}})
    with pytest.raises(UpstreamBadResponse, match="no chunk"):
        StreamedAnswer(None).completion()
