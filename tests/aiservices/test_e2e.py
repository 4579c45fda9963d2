"""tools/call end to end through a real HTTP upstream served on 127.0.0.1 by the test (no mocks)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from aiservices import client
from aiservices.models import AIServiceCall

from .conftest import AGENTA_SETTINGS, OPENAI_SETTINGS, REFINE, TEMPLATE, TEMPLATE_JSON, apply

pytestmark = pytest.mark.django_db


def refine(template: dict) -> dict:
    """What the fake model does: reword every message, keeping roles and variables."""
    messages = [{"role": m["role"], "content": f"Be precise. {m['content']}"} for m in template["messages"]]
    return {"messages": messages, "summary": "Added a precision instruction to every message."}


class FakeLLMService(BaseHTTPRequestHandler):
    """Agenta's ``/services/completion/run`` and an OpenAI-compatible ``/chat/completions``."""

    received: list[dict] = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if self.path == "/api/services/completion/run" and self.headers["Authorization"] == "ApiKey ag-secret":
            output = refine(json.loads(body["inputs"]["__ag_prompt_template_json"]))
            answer = {"version": "3.0", "data": json.dumps(output), "trace_id": "agenta-trace-42"}
            self._send(200, answer)
        elif self.path == "/v1/chat/completions" and self.headers["Authorization"] == "Bearer sk-test":
            output = refine(json.loads(body["messages"][1]["content"])["prompt_template"])
            answer = {
                "choices": [{"message": {"role": "assistant", "content": json.dumps(output)}, "finish_reason": "stop"}],
                "usage": {"total_tokens": 77},
            }
            self._send(200, answer, {"x-request-id": "oa-req-42"})
        else:
            self._send(401, {"error": "bad key or path"})

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def llm_server():
    FakeLLMService.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeLLMService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    client.reset_session()


@pytest.mark.parametrize(
    ("provider", "path", "trace_id", "tokens"),
    [("agenta", "/api", "agenta-trace-42", None), ("openai", "/v1", "oa-req-42", 77)],
)
def test_tools_call_through_a_real_upstream(settings, llm_server, tool_client, tool_user, provider, path, trace_id,
                                            tokens):
    apply(settings, AGENTA_SETTINGS if provider == "agenta" else OPENAI_SETTINGS)
    settings.AI_SERVICES_API_URL = llm_server + path

    response = tool_client.post(
        "/api/v1/ai/services/tools/call",
        {"name": REFINE, "arguments": {"prompt_template_json": TEMPLATE_JSON, "guidelines": "Be precise."}},
        format="json",
    )

    assert response.status_code == 200
    expected = refine(TEMPLATE)
    assert response.json() == {
        "content": [{"type": "text", "text": expected["summary"]}],
        "structuredContent": expected,
        "isError": False,
        "meta": {"trace_id": trace_id},
    }
    assert response["X-RateLimit-Remaining"] == "9"
    assert len(FakeLLMService.received) == 1
    sent = FakeLLMService.received[0]
    if provider == "agenta":
        assert sent["body"] == {
            "inputs": {
                "__ag_prompt_template_json": TEMPLATE_JSON, "__ag_guidelines": "Be precise.", "__ag_context": "",
            },
            "environment": "production",
            "app": "ai-refine",
        }
    else:
        assert sent["body"]["model"] == "gpt-test"
    record = AIServiceCall.objects.get()
    assert (record.user, record.outcome, record.provider, record.trace_id, record.tokens) == (
        tool_user, "ok", provider, trace_id, tokens)


def test_a_wrong_key_through_a_real_upstream_is_a_tool_error(settings, llm_server, tool_client):
    apply(settings, AGENTA_SETTINGS)
    settings.AI_SERVICES_API_URL = llm_server + "/api"
    settings.AI_SERVICES_API_KEY = "wrong"
    body = tool_client.post(
        "/api/v1/ai/services/tools/call", {"name": REFINE, "arguments": {"prompt_template_json": TEMPLATE_JSON}},
        format="json",
    ).json()
    assert body["isError"] is True
    assert body["content"][0]["text"] == (
        "The AI service refused the credentials (HTTP 401); check AI_SERVICES_API_KEY."
    )
    assert "bad key" not in json.dumps(body)
