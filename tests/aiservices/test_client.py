"""The upstream client and both providers, through the refine_prompt tool (``responses`` mocks),
plus the retry policy against real sockets."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import responses
import urllib3.util.connection

from aiservices import client
from aiservices.providers import SYSTEM_PROMPT
from aiservices.tools import registry

from .conftest import REFINE, REFINED, TEMPLATE, TEMPLATE_JSON, agenta_body, openai_body, refine_args

tool = registry.get(REFINE)


def run(**overrides):
    return tool.run(refine_args(**overrides), request_id="req-local-1")


def answer(provider: str, upstream, url: str, output=REFINED) -> None:
    body = agenta_body(output) if provider == "agenta" else openai_body(output)
    upstream.add(responses.POST, url, json=body, status=200, headers={"x-request-id": "req-openai-9"})


@pytest.fixture(params=["agenta", "openai"])
def provider(request):
    """Each test runs against both providers: yields ``(name, url)``."""
    url = request.getfixturevalue(request.param)
    return request.param, url


# --- success -------------------------------------------------------------------------------------


def test_agenta_success_sends_the_contract_request(agenta, upstream):
    upstream.add(responses.POST, agenta, json=agenta_body(REFINED), status=200)
    result = run(context="A travel FAQ bot.")

    assert not result.is_error
    assert result.structured == REFINED
    assert result.text == "Made the system message precise."
    assert result.trace_id == "trace-agenta-1"
    assert result.tokens is None
    assert result.provider == "agenta"
    call = upstream.calls[0]
    assert call.request.url == "https://agenta.test/api/services/completion/run"
    assert call.request.headers["Authorization"] == "ApiKey ag-secret"
    assert call.request.headers["Content-Type"] == "application/json"
    assert call.request.headers["Accept"] == "application/json"
    assert call.request.headers["X-Request-ID"] == "req-local-1"
    assert json.loads(call.request.body) == {
        "inputs": {
            "__ag_prompt_template_json": TEMPLATE_JSON,
            "__ag_guidelines": "Be precise.",
            "__ag_context": "A travel FAQ bot.",
        },
        "environment": "production",
        "app": "ai-refine",
    }


def test_agenta_optional_inputs_are_sent_empty_and_trace_id_may_be_camel_case(agenta, upstream):
    body = agenta_body(REFINED, trace_id=None)
    body["traceId"] = "camel-1"
    upstream.add(responses.POST, agenta, json=body, status=200)
    result = tool.run({"prompt_template_json": TEMPLATE_JSON}, request_id="r")
    assert result.trace_id == "camel-1"
    sent = json.loads(upstream.calls[0].request.body)["inputs"]
    assert sent["__ag_guidelines"] == "" and sent["__ag_context"] == ""


def test_agenta_data_already_an_object_is_accepted(agenta, upstream):
    upstream.add(responses.POST, agenta, json={"data": REFINED, "trace_id": "t"}, status=200)
    assert run().structured == REFINED


def test_openai_success_sends_our_system_prompt_and_json_schema(openai, upstream):
    upstream.add(responses.POST, openai, json=openai_body(REFINED), status=200, headers={"x-request-id": "req-9"})
    result = run(context="FAQ bot")

    assert not result.is_error
    assert result.structured == REFINED
    assert result.trace_id == "req-9"
    assert result.tokens == 150
    assert result.provider == "openai"
    request = upstream.calls[0].request
    assert request.url == "http://llm.test/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer sk-test"
    payload = json.loads(request.body)
    assert payload["model"] == "gpt-test"
    assert payload["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert json.loads(payload["messages"][1]["content"]) == {
        "prompt_template": TEMPLATE, "guidelines": "Be precise.", "context": "FAQ bot",
    }
    assert payload["response_format"]["type"] == "json_schema"
    assert payload["response_format"]["json_schema"]["strict"] is True
    assert payload["response_format"]["json_schema"]["schema"] == tool.output_schema


def test_openai_without_api_key_sends_no_authorization(openai, upstream, settings):
    settings.AI_SERVICES_API_KEY = ""
    upstream.add(responses.POST, openai, json=openai_body(REFINED), status=200)
    assert not run().is_error
    assert "Authorization" not in upstream.calls[0].request.headers


def test_openai_fenced_json_and_missing_usage(openai, upstream):
    body = openai_body(REFINED, content="```json\n" + json.dumps(REFINED) + "\n```")
    del body["usage"]
    upstream.add(responses.POST, openai, json=body, status=200)
    result = run()
    assert result.structured == REFINED
    assert result.tokens is None
    assert result.trace_id is None  # no x-request-id: the service falls back to its own id


def test_openai_truncated_answer_is_an_error(openai, upstream):
    upstream.add(responses.POST, openai, json=openai_body(REFINED, finish_reason="length"), status=200)
    result = run()
    assert result.is_error
    assert "output length limit" in result.text


def test_missing_summary_defaults(provider, upstream):
    name, url = provider
    answer(name, upstream, url, {"messages": REFINED["messages"]})
    result = run()
    assert not result.is_error
    assert result.text == "Prompt refined."
    assert result.structured == {"messages": REFINED["messages"], "summary": "Prompt refined."}


def test_extra_output_keys_and_message_keys_are_dropped(provider, upstream):
    name, url = provider
    output = {
        "messages": [{**m, "name": "x"} for m in REFINED["messages"]],
        "summary": "ok",
        "template_format": "fstring",
    }
    answer(name, upstream, url, output)
    result = run()
    assert result.structured == {"messages": REFINED["messages"], "summary": "ok"}


# --- transport failures: isError, never the upstream body ------------------------------------------


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (requests.exceptions.ReadTimeout("read timed out"), "The AI service did not answer within 60 s."),
        (requests.exceptions.ConnectTimeout("connect timed out"), "Could not connect to the AI service within 3.05 s."),
        (requests.exceptions.ConnectionError("refused"), "Could not reach the AI service."),
    ],
)
def test_timeouts_and_connection_errors(provider, upstream, error, message):
    _, url = provider
    upstream.add(responses.POST, url, body=error)
    result = run()
    assert result.is_error
    assert result.text == message
    assert result.structured is None
    assert result.error_code in ("upstream_timeout", "upstream_unreachable")


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (500, "The AI service failed (HTTP 500)."),
        (502, "The AI service failed (HTTP 502)."),
        (401, "The AI service refused the credentials (HTTP 401); check AI_SERVICES_API_KEY."),
        (429, "The AI service is rate limiting requests (HTTP 429); try again later."),
    ],
)
def test_non_2xx_is_an_error_without_the_upstream_body(provider, upstream, status, message):
    _, url = provider
    upstream.add(responses.POST, url, body="Traceback: secret-internal-detail", status=status)
    result = run()
    assert result.is_error
    assert result.text == message
    assert "secret-internal-detail" not in result.text


def test_non_json_answer(provider, upstream):
    _, url = provider
    upstream.add(responses.POST, url, body="<html>gateway says hi</html>", status=200, content_type="text/html")
    result = run()
    assert result.is_error
    assert result.text == "The AI service returned an answer that is not JSON."
    assert "gateway" not in result.text


@pytest.mark.parametrize(
    ("provider_name", "body", "message"),
    [
        ("agenta", ["not", "an", "object"], "unexpected response format (not an object)"),
        ("agenta", {"version": "3.0", "trace_id": "t-1"}, "unexpected response format (no 'data')"),
        ("agenta", {"data": 42}, "unexpected response format (no 'data')"),
        ("agenta", {"data": "not json {"}, "its output is not valid JSON"),
        ("agenta", {"data": json.dumps({"refined_prompt": "x"})}, "The refined output has no 'messages' list."),
        ("agenta", {"data": json.dumps({"messages": [{"role": "system"}]})}, "is not an object with string 'role'"),
        ("openai", {"choices": []}, "unexpected response format (no choices)"),
        ("openai", {"choices": [{"message": {"content": None}}]}, "(no message content)"),
        ("openai", {"choices": [{"message": {"content": None, "refusal": "no"}}]}, "The model refused"),
        ("openai", {"choices": [{"message": {"content": "Sure! Here it is"}}]}, "its output is not valid JSON"),
        ("openai", {"choices": [{"message": {"content": json.dumps({"messages": "x"})}}]}, "no 'messages' list"),
        ("openai", {"choices": [{"message": {"content": json.dumps({**REFINED, "summary": 3})}}]},
         "'summary' is not a string"),
    ],
)
def test_wrong_shape(request, upstream, provider_name, body, message):
    url = request.getfixturevalue(provider_name)
    upstream.add(responses.POST, url, json=body, status=200)
    result = run()
    assert result.is_error
    assert message in result.text
    assert result.structured is None


def test_wrong_shape_keeps_the_upstream_trace_id(agenta, upstream):
    upstream.add(responses.POST, agenta, json={"version": "3.0", "trace_id": "t-1"}, status=200)
    assert run().trace_id == "t-1"


DEEP = "[" * 100_000 + "]" * 100_000


def test_an_answer_nested_too_deeply_is_a_bad_response(provider, upstream, caplog):
    _, url = provider
    upstream.add(responses.POST, url, body=DEEP, status=200, content_type="application/json")
    result = run()
    assert result.is_error
    assert result.text == "The AI service returned an answer nested too deeply to read."
    assert result.error_code == "upstream_bad_response"
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # a bad answer, not a defect


@pytest.mark.parametrize("provider_name", ["agenta", "openai"])
def test_an_output_nested_too_deeply_is_a_bad_response(request, upstream, provider_name, caplog):
    url = request.getfixturevalue(provider_name)
    body = {"data": DEEP, "trace_id": "t-deep"} if provider_name == "agenta" else openai_body(None, content=DEEP)
    upstream.add(responses.POST, url, json=body, status=200)
    result = run()
    assert result.is_error
    assert result.text == (
        "The AI service returned an unexpected response format (its output is nested too deeply to read)."
    )
    assert result.error_code == "upstream_bad_response"
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


# --- the size cap: an oversized answer is refused without being read whole ---------------------------


class CountingBody(io.RawIOBase):
    """A response body of ``size`` bytes (a JSON string) that counts how many bytes were read from it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.size - self.served)
        data = (b'"' + b"x" * (n - 1)) if self.served == 0 and n else b"x" * n
        buffer[:n] = data
        self.served += n
        return n


@pytest.fixture
def small_cap(monkeypatch):
    monkeypatch.setattr(client, "MAX_RESPONSE_BYTES", 64 * 1024)
    return client.MAX_RESPONSE_BYTES


def test_an_oversized_answer_is_refused_without_reading_it_all(provider, upstream, small_cap):
    _, url = provider
    body = CountingBody(50 * 1024 * 1024)
    upstream.add(responses.POST, url, body=io.BufferedReader(body), status=200, content_type="application/json")
    result = run()
    assert result.is_error
    assert result.text == "The AI service returned an answer that is too large."
    assert small_cap < body.served <= small_cap + 1 + io.DEFAULT_BUFFER_SIZE  # the cap + 1, through a buffer
    assert body.served < body.size


def test_an_announced_oversized_answer_is_refused_before_its_body(provider, upstream, small_cap):
    _, url = provider
    body = CountingBody(50 * 1024 * 1024)
    upstream.add(responses.POST, url, body=io.BufferedReader(body), status=200, content_type="application/json",
                 headers={"Content-Length": str(body.size)})
    result = run()
    assert result.text == "The AI service returned an answer that is too large."
    assert body.served == 0


@pytest.mark.parametrize(("extra", "accepted"), [(0, True), (1, False)])
def test_an_answer_at_the_cap_is_accepted_and_one_byte_more_is_not(agenta, upstream, small_cap, extra, accepted):
    answer = json.dumps(agenta_body(REFINED))
    padded = answer[:-1] + ', "pad": "' + "p" * (small_cap + extra - len(answer) - 11) + '"}'
    assert len(padded.encode()) == small_cap + extra
    upstream.add(responses.POST, agenta, body=padded, status=200, content_type="application/json")
    result = run()
    assert result.is_error is not accepted
    assert result.structured == (REFINED if accepted else None)


# --- output rules: stricter than the upstream's own prompt -----------------------------------------


def refined_with(*contents: str, roles=("system", "user"), summary="s") -> dict:
    return {"messages": [{"role": r, "content": c} for r, c in zip(roles, contents, strict=False)], "summary": summary}


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (
            refined_with("{{question}}", "About {{country}}.", roles=("user", "system")),
            "Message 1 changed role from 'system' to 'user'. Message 2 changed role from 'user' to 'system'.",
        ),
        (
            refined_with("Expert on {{country}}.", "Please answer the question."),
            "Message 2 (user) dropped {{question}}.",
        ),
        (
            refined_with("Expert on {{country}} in {{language}}.", "{{question}} {{ tone }}"),
            "adds variables the original does not have: {{language}}, {{tone}}.",
        ),
        (
            refined_with("Expert on {{country}}.", "{{question}}", "Extra", roles=("system", "user", "user")),
            "The refined template has 3 messages; the original has 2.",
        ),
        (refined_with("Expert on {{country}}."), "The refined template has 1 messages; the original has 2."),
        (
            refined_with("Expert on {{country}}.", "{{question}}", roles=("system", "tool")),
            "Message 2 changed role from 'user' to 'tool'. Refined message 2 has the unknown role 'tool'.",
        ),
        (refined_with("{{country}}", "   "), "Message 2 (user) dropped {{question}}. Message 2 (user) is empty"),
    ],
    ids=["changed-roles", "dropped-variable", "added-variable", "added-message", "removed-message", "bad-role",
         "emptied"],
)
def test_refinement_rules(provider, upstream, output, message):
    name, url = provider
    answer(name, upstream, url, output)
    result = run()
    assert result.is_error
    assert result.text.startswith("The refined template was rejected: ")
    assert message in result.text
    assert result.structured is None
    assert result.error_code == "invalid_refinement"


def test_a_variable_moved_to_another_message_is_dropped_there(provider, upstream):
    name, url = provider
    answer(name, upstream, url, refined_with("About {{country}}: {{question}}", "Answer it."))
    result = run()
    assert result.is_error
    assert "Message 2 (user) dropped {{question}}." in result.text
    assert "adds variables" not in result.text  # {{question}} is not new to the template


# --- the retry policy, against real sockets -------------------------------------------------------


class _Server:
    """A counting HTTP server on 127.0.0.1 (ephemeral port) whose handler behaviour is a function."""

    def __init__(self, behave):
        self.hits = 0
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                outer.hits += 1
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                behave(self, outer)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def real_server(settings):
    servers = []

    def start(behave):
        server = _Server(behave)
        servers.append(server)
        settings.AI_SERVICES_PROVIDER = "openai"
        settings.AI_SERVICES_API_URL = server.url + "/v1"
        settings.AI_SERVICES_MODEL = "m"
        settings.AI_SERVICES_API_KEY = ""
        return server

    yield start
    for server in servers:
        server.close()
    client.reset_session()


def test_read_timeout_is_never_retried(real_server, settings):
    def stall(handler, server):
        server.release.wait(5)

    server = real_server(stall)
    settings.AI_SERVICES_READ_TIMEOUT = 0.3
    result = run()
    assert result.is_error
    assert result.text == "The AI service did not answer within 0.3 s."
    assert server.hits == 1


def test_server_errors_are_never_retried(real_server):
    def fail(handler, server):
        handler.send_response(503)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    server = real_server(fail)
    result = run()
    assert result.text == "The AI service failed (HTTP 503)."
    assert server.hits == 1


def test_connection_failures_are_retried_then_reported(real_server, monkeypatch):
    server = real_server(lambda handler, server: None)
    attempts = []

    def refuse(address, *args, **kwargs):
        attempts.append(address)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(urllib3.util.connection, "create_connection", refuse)
    result = run()
    assert result.is_error
    assert result.text == "Could not reach the AI service."
    assert len(attempts) == 1 + client.CONNECT_RETRIES
    assert server.hits == 0


def test_a_closed_port_is_unreachable(settings):
    server = _Server(lambda handler, server: None)
    url = server.url
    server.close()
    settings.AI_SERVICES_PROVIDER, settings.AI_SERVICES_API_URL, settings.AI_SERVICES_MODEL = "openai", url, "m"
    result = run()
    assert result.is_error
    assert result.text == "Could not reach the AI service."


def test_one_session_per_process_with_connect_only_retries():
    client.reset_session()
    session = client.get_session()
    assert client.get_session() is session
    retry = session.get_adapter("https://agenta.test/").max_retries
    assert retry.connect == client.CONNECT_RETRIES
    assert retry.read is False
    assert retry.status == 0 and retry.other == 0 and not retry.status_forcelist
    assert "POST" in retry.allowed_methods
    client.reset_session()
    assert client.get_session() is not session


def test_an_oversized_answer_from_a_real_upstream_is_cut_off(real_server, small_cap):
    """The upstream streams 50 MB without a Content-Length; the client stops after the cap + 1 bytes and
    closes, so the upstream's writing breaks off long before the end."""
    total = 50 * 1024 * 1024
    done = threading.Event()
    written = {"bytes": 0, "error": None}

    def flood(handler, server):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.end_headers()
        chunk = b"x" * 65536
        try:
            handler.wfile.write(b'"')
            while written["bytes"] < total:
                handler.wfile.write(chunk)
                written["bytes"] += len(chunk)
        except OSError as exc:
            written["error"] = exc
        finally:
            done.set()

    real_server(flood)
    result = run()
    assert result.is_error
    assert result.text == "The AI service returned an answer that is too large."
    assert done.wait(10)
    assert isinstance(written["error"], BrokenPipeError | ConnectionResetError)
    assert written["bytes"] < total


def test_an_announced_oversized_answer_from_a_real_upstream_is_refused_before_its_body(real_server, small_cap,
                                                                                       settings):
    settings.AI_SERVICES_READ_TIMEOUT = 5  # were the body awaited, the answer would be a timeout instead

    def announce(handler, server):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(small_cap + 1))
        handler.end_headers()
        handler.wfile.flush()
        server.release.wait(10)  # the body never comes while the client waits

    real_server(announce)
    result = run()
    assert result.text == "The AI service returned an answer that is too large."


def test_an_answer_that_stalls_mid_body_is_a_timeout(real_server, settings):
    def stall(handler, server):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        handler.wfile.write(b'{"choices": ')
        handler.wfile.flush()
        server.release.wait(5)

    server = real_server(stall)
    settings.AI_SERVICES_READ_TIMEOUT = 0.3
    result = run()
    assert result.text == "The AI service did not answer within 0.3 s."
    assert result.error_code == "upstream_timeout"
    assert server.hits == 1
