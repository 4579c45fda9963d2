"""The runtime's chat-completions client: the OpenAI wire format, retries with backoff on 429/5xx, the error
mapping shared with the AI tools, and the offline provider."""

from __future__ import annotations

import json

import pytest
import requests
import responses
from django.test import override_settings

from aiservices import client, llm
from aiservices.exceptions import UpstreamBadResponse, UpstreamHTTPError, UpstreamTimeout, UpstreamUnreachable

URL = "http://llm.test/v1/chat/completions"
UPSTREAM = {"AGENT_LLM_API_URL": "http://llm.test/v1/", "AGENT_LLM_API_KEY": "sk-test", "AGENT_LLM_MAX_RETRIES": 2,
            "AGENT_LLM_RETRY_BACKOFF_SECONDS": 0.001, "AGENT_LLM_PROVIDER": "openai"}


def completion(message: dict, usage: dict | None = None, model: str = "gpt-test") -> dict:
    body = {"model": model, "choices": [{"message": message, "finish_reason": "stop"}]}
    if usage is not None:
        body["usage"] = usage
    return body


@pytest.fixture(autouse=True)
def _fresh_session():
    client.reset_session()
    yield
    client.reset_session()


def ask(**kwargs) -> llm.ChatCompletion:
    request = llm.ChatRequest(model="gpt-test", messages=[{"role": "user", "content": "hi"}], **kwargs)
    return llm.OpenAIChatProvider().complete(request, request_id="run-1")


@override_settings(**UPSTREAM)
@responses.activate
def test_the_request_and_the_answer_follow_the_openai_format():
    responses.post(URL, json=completion({"role": "assistant", "content": "hello"},
                                        {"prompt_tokens": 12, "completion_tokens": 3}))
    tool = {"type": "function", "function": {"name": "read_context", "description": "d", "parameters": {}}}
    answer = ask(tools=[tool], params={"temperature": 0.2})
    sent = json.loads(responses.calls[0].request.body)
    assert sent == {"temperature": 0.2, "model": "gpt-test", "messages": [{"role": "user", "content": "hi"}],
                    "tools": [tool], "tool_choice": "auto", "max_tokens": 2048}
    headers = responses.calls[0].request.headers
    assert headers["Authorization"] == "Bearer sk-test" and headers["X-Request-ID"] == "run-1"
    assert (answer.content, answer.prompt_tokens, answer.completion_tokens, answer.model) == ("hello", 12, 3,
                                                                                            "gpt-test")
    assert answer.tool_calls == [] and answer.usage_reported


@override_settings(**UPSTREAM)
@responses.activate
def test_tool_calls_are_kept_and_missing_usage_counts_zero():
    call = {"id": "c1", "type": "function", "function": {"name": "read_context", "arguments": "{\"name\": \"n\"}"}}
    responses.post(URL, json=completion({"role": "assistant", "content": None, "tool_calls": [call]}))
    answer = ask()
    assert answer.tool_calls == [call] and answer.content == ""
    assert (answer.prompt_tokens, answer.completion_tokens, answer.usage_reported) == (0, 0, False)


@override_settings(**UPSTREAM)
@responses.activate
@pytest.mark.parametrize("status", [429, 500, 503])
def test_429_and_5xx_are_retried_with_backoff(status):
    responses.post(URL, status=status)
    responses.post(URL, status=status)
    responses.post(URL, json=completion({"role": "assistant", "content": "finally"}))
    answer = ask()
    assert answer.content == "finally" and answer.attempts == 3 and len(responses.calls) == 3


@override_settings(**UPSTREAM)
@responses.activate
def test_retries_are_bounded():
    for _ in range(3):
        responses.post(URL, status=502)
    with pytest.raises(UpstreamHTTPError) as failed:
        ask()
    assert failed.value.status == 502 and len(responses.calls) == 3


@override_settings(**UPSTREAM)
@responses.activate
def test_a_client_error_is_not_retried():
    responses.post(URL, status=400, json={"error": "bad"})
    with pytest.raises(UpstreamHTTPError) as failed:
        ask()
    assert failed.value.status == 400 and len(responses.calls) == 1
    assert failed.value.message == "The AI service failed (HTTP 400)."


@override_settings(**UPSTREAM)
@responses.activate
def test_retry_after_is_honoured(monkeypatch):
    waits = []
    monkeypatch.setattr(llm.time, "sleep", waits.append)
    responses.post(URL, status=429, headers={"Retry-After": "7"})
    responses.post(URL, status=429, headers={"Retry-After": "9000"})
    responses.post(URL, json=completion({"role": "assistant", "content": "ok"}))
    ask()
    assert waits == [7.0, llm.MAX_BACKOFF_SECONDS]


@override_settings(**UPSTREAM)
@responses.activate
def test_credentials_errors_name_the_runtime_settings():
    responses.post(URL, status=401)
    with pytest.raises(UpstreamHTTPError) as failed:
        ask()
    assert "AGENT_LLM_API_KEY" in failed.value.message


@override_settings(**UPSTREAM)
@responses.activate
def test_a_read_timeout_is_upstream_timeout():
    responses.post(URL, body=requests.exceptions.ReadTimeout("slow"))
    with pytest.raises(UpstreamTimeout):
        ask()


@override_settings(**{**UPSTREAM, "AGENT_LLM_API_URL": ""})
def test_no_url_is_unreachable():
    with pytest.raises(UpstreamUnreachable, match="AGENT_LLM_API_URL"):
        ask()


@pytest.mark.parametrize(
    "body",
    [
        {"choices": []},
        {"choices": [{"message": "text"}]},
        {"choices": [{"message": {"role": "assistant", "content": 5}}]},
        {"choices": [{"message": {"role": "assistant", "content": None}}]},
        {"choices": [{"message": {"role": "assistant", "tool_calls": [{"function": {"name": "x"}}]}}]},
        [1, 2],
    ],
)
def test_answers_that_are_not_chat_completions_are_bad_responses(body):
    with pytest.raises(UpstreamBadResponse):
        llm.parse_completion(body, asked_model="m")


def test_a_refusal_is_an_answer():
    answer = llm.parse_completion({"choices": [{"message": {"role": "assistant", "content": None,
                                                            "refusal": "I cannot"}}]}, asked_model="m")
    assert answer.content == "I cannot" and answer.finish_reason == "refusal"


# --- The offline provider ---------------------------------------------------------------------------------

TOOLS = [{"type": "function", "function": {"name": n, "description": "", "parameters": {}}}
         for n in ("query_agents", "read_context", "write_context")]


def test_the_offline_provider_reads_then_writes_then_answers():
    offline = llm.OfflineChatProvider()
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "Ship it"}]
    first = offline.complete(llm.ChatRequest(model="x", messages=messages, tools=TOOLS), request_id="r")
    assert [c["function"]["name"] for c in first.tool_calls] == ["query_agents", "read_context"]
    assert first.model == "offline" and first.prompt_tokens > 0 and first.completion_tokens > 0
    messages += [first.message] + [{"role": "tool", "tool_call_id": c["id"], "content": "{}"}
                                   for c in first.tool_calls]
    second = offline.complete(llm.ChatRequest(model="x", messages=messages, tools=TOOLS), request_id="r")
    write = second.tool_calls[0]["function"]
    assert write["name"] == "write_context" and json.loads(write["arguments"])["name"] == "notes"
    messages += [second.message, {"role": "tool", "tool_call_id": second.tool_calls[0]["id"], "content": "{}"}]
    last = offline.complete(llm.ChatRequest(model="x", messages=messages, tools=TOOLS), request_id="r")
    assert last.tool_calls == [] and last.content.startswith("[offline provider:") and "Ship it" in last.content


@override_settings(AGENT_LLM_PROVIDER="mystery")
def test_an_unknown_provider_is_unreachable():
    with pytest.raises(UpstreamUnreachable, match="mystery"):
        llm.get_chat_provider()


def test_the_settings_refuse_offline_when_debug_is_off():
    import subprocess
    import sys

    from django.conf import settings

    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={"DJANGO_SETTINGS_MODULE": "syndarix.settings", "DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": "x" * 50,
             "AGENT_LLM_PROVIDER": "offline", "PATH": "/usr/bin:/bin"},
        cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0 and "AGENT_LLM_PROVIDER=offline" in result.stderr


def test_the_offline_provider_asks_first_when_told_to_and_writes_the_answer():
    tools = [*TOOLS, {"type": "function", "function": {"name": "request_input", "description": "",
                                                        "parameters": {}}}]
    offline = llm.OfflineChatProvider()
    messages = [{"role": "user", "content": "Ask me what to write"}]
    first = offline.complete(llm.ChatRequest(model="x", messages=messages, tools=tools), request_id="r")
    question = json.loads(first.tool_calls[0]["function"]["arguments"])
    assert first.tool_calls[0]["function"]["name"] == "request_input"
    assert question["requestedSchema"]["required"] == ["answer"]
    messages += [first.message, {"role": "tool", "tool_call_id": first.tool_calls[0]["id"],
                                 "content": json.dumps({"action": "accept", "content": {"answer": "Ship 2.0"}})}]
    reads = offline.complete(llm.ChatRequest(model="x", messages=messages, tools=tools), request_id="r")
    messages += [reads.message] + [{"role": "tool", "tool_call_id": c["id"], "content": "{}"} for c in reads.tool_calls]
    write = offline.complete(llm.ChatRequest(model="x", messages=messages, tools=tools), request_id="r")
    note = json.loads(write.tool_calls[0]["function"]["arguments"])["data"]["last_run"]
    assert note["answer"] == "Ship 2.0"
