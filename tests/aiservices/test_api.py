"""The AI services API: status, tools/call, permission, configuration, validation, rate limits, records."""

from __future__ import annotations

import json
import re
import threading
from typing import Any, ClassVar

import pytest
import responses
from django.contrib.auth.models import Group, Permission
from django.db import connection
from rest_framework.test import APIClient

from aiservices.choices import CallOutcome
from aiservices.models import AIServiceCall
from aiservices.tools import NAMESPACE, Tool, ToolResult, registry
from aiservices.views import StatusView
from tests.conftest import client_for
from tests.factories import UserFactory

from .conftest import REFINE, REFINED, TEMPLATE_JSON, agenta_body, answer_agenta, openai_body, refine_args

pytestmark = pytest.mark.django_db

STATUS = "/api/v1/ai/services/status"
CALL = "/api/v1/ai/services/tools/call"


def call(client, name: str = REFINE, arguments: Any = None, **extra):
    body = {"name": name, "arguments": refine_args() if arguments is None else arguments}
    return client.post(CALL, body, format="json", **extra)


def errors(response) -> list[dict[str, Any]]:
    assert response.json()["success"] is False
    return response.json()["errors"]


# --- status --------------------------------------------------------------------------------------


def test_status_requires_authentication(api_client, agenta):
    response = api_client.get(STATUS)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert errors(response)[0]["code"] == "not_authenticated"


def test_status_lists_the_tool_definitions(tool_client, agenta):
    response = tool_client.get(STATUS)
    assert response.status_code == 200
    body = response.json()
    assert body["enabled"] is True
    assert [t["name"] for t in body["tools"]] == [REFINE]
    definition = body["tools"][0]
    assert set(definition) == {"name", "title", "description", "inputSchema", "outputSchema"}
    assert definition["title"] == "Refine Prompt"
    assert definition["inputSchema"]["required"] == ["prompt_template_json"]
    assert definition["inputSchema"]["additionalProperties"] is False
    assert definition["inputSchema"]["properties"]["prompt_template_json"]["maxLength"] == 100_000
    assert definition["outputSchema"]["required"] == ["messages", "summary"]
    assert response["X-RateLimit-Limit"] == "120"


def test_status_without_the_permission_shows_no_tools(agenta, user):
    response = client_for(user).get(STATUS)
    assert response.status_code == 200
    assert response.json() == {"enabled": True, "tools": []}


def test_status_for_a_superuser(agenta, superuser):
    assert [t["name"] for t in client_for(superuser).get(STATUS).json()["tools"]] == [REFINE]


@pytest.mark.parametrize(
    "overrides",
    [
        {"AI_SERVICES_API_URL": ""},
        {"AI_SERVICES_API_KEY": "   "},
        {"AI_SERVICES_ENVIRONMENT_SLUG": ""},
        {"AI_SERVICES_REFINE_PROMPT_KEY": ""},
        {"AI_SERVICES_PROVIDER": "something-else"},
    ],
)
def test_status_disabled_when_any_required_setting_is_blank(tool_client, agenta, settings, overrides):
    for name, value in overrides.items():
        setattr(settings, name, value)
    response = tool_client.get(STATUS)
    assert response.status_code == 200
    assert response.json() == {"enabled": False, "tools": []}


def test_openai_is_enabled_without_api_key_but_not_without_model(tool_client, openai, settings):
    settings.AI_SERVICES_API_KEY = ""
    assert tool_client.get(STATUS).json()["enabled"] is True
    settings.AI_SERVICES_MODEL = " "
    assert tool_client.get(STATUS).json() == {"enabled": False, "tools": []}


def test_status_is_rate_limited(tool_client, agenta, monkeypatch, clock):
    monkeypatch.setattr(StatusView, "rate_limits", {"get": "2/m"})
    assert tool_client.get(STATUS).status_code == 200
    assert tool_client.get(STATUS).status_code == 200
    response = tool_client.get(STATUS)
    assert response.status_code == 429
    assert errors(response)[0]["code"] == "rate_limited"
    assert int(response["Retry-After"]) >= 1


# --- tools/call: success and tool errors --------------------------------------------------------


def test_call_refines_and_records(tool_client, tool_user, agenta, upstream, django_assert_num_queries):
    answer_agenta(upstream, agenta)
    # token + user, the user's permissions and group permissions, the call record
    with django_assert_num_queries(4):
        response = call(tool_client)
    assert response.status_code == 200
    assert response.json() == {
        "content": [{"type": "text", "text": "Made the system message precise."}],
        "structuredContent": REFINED,
        "isError": False,
        "meta": {"trace_id": "trace-agenta-1"},
    }
    assert response["X-RateLimit-Limit"] == "10"
    assert response["X-RateLimit-Remaining"] == "9"
    record = AIServiceCall.objects.get()
    assert (record.user, record.tool, record.outcome, record.provider) == (tool_user, REFINE, "ok", "agenta")
    assert record.trace_id == "trace-agenta-1"
    assert record.duration_ms >= 0
    assert record.tokens is None
    assert record.error_message == ""


def test_call_with_openai_records_tokens(tool_client, openai, upstream):
    upstream.add(responses.POST, openai, json=openai_body(REFINED), status=200, headers={"x-request-id": "oa-1"})
    response = call(tool_client)
    assert response.status_code == 200
    assert response.json()["meta"] == {"trace_id": "oa-1"}
    assert AIServiceCall.objects.get().tokens == 150


def test_upstream_failure_is_200_is_error_with_our_request_id(tool_client, agenta, upstream):
    upstream.add(responses.POST, agenta, body="internal stack trace", status=500)
    response = call(tool_client, HTTP_X_REQUEST_ID="req-abc.123")
    assert response.status_code == 200
    assert response.json() == {
        "content": [{"type": "text", "text": "The AI service failed (HTTP 500)."}],
        "isError": True,
        "meta": {"trace_id": "req-abc.123"},
    }
    assert upstream.calls[0].request.headers["X-Request-ID"] == "req-abc.123"
    record = AIServiceCall.objects.get()
    assert record.outcome == CallOutcome.TOOL_ERROR
    assert record.error_code == "upstream_http_error"
    assert record.error_message == "The AI service failed (HTTP 500)."
    assert record.trace_id == "req-abc.123"


def test_a_refinement_that_drops_a_variable_is_not_success(tool_client, agenta, upstream):
    output = {"messages": [{"role": "system", "content": "About {{country}}."}, {"role": "user", "content": "Ask."}]}
    answer_agenta(upstream, agenta, output)
    body = call(tool_client).json()
    assert body["isError"] is True
    assert "structuredContent" not in body
    assert body["content"][0]["text"] == "The refined template was rejected: Message 2 (user) dropped {{question}}."
    assert body["meta"]["trace_id"] == "trace-agenta-1"
    assert AIServiceCall.objects.get().error_code == "invalid_refinement"


def test_a_generated_trace_id_when_no_usable_request_id(tool_client, agenta, upstream):
    upstream.add(responses.POST, agenta, body=ConnectionError("down"))
    body = call(tool_client, HTTP_X_REQUEST_ID="not a token!").json()
    assert body["isError"] is True
    assert re.fullmatch(r"[0-9a-f]{32}", body["meta"]["trace_id"])


def test_superuser_and_group_members_may_call(agenta, upstream, superuser):
    answer_agenta(upstream, agenta)
    assert call(client_for(superuser)).status_code == 200
    group = Group.objects.create(name="prompt editors")
    group.permissions.add(Permission.objects.get(codename="edit_workflows"))
    member = UserFactory()
    member.groups.add(group)
    assert call(client_for(member)).status_code == 200


# --- refusals ------------------------------------------------------------------------------------


def test_call_requires_authentication(api_client, agenta):
    response = call(api_client)
    assert response.status_code == 401
    assert errors(response)[0]["code"] == "not_authenticated"
    assert not AIServiceCall.objects.exists()


def test_call_without_the_permission_is_403(user, agenta, upstream):
    response = call(client_for(user))
    assert response.status_code == 403
    assert errors(response) == [
        {
            "code": "permission_denied",
            "message": "You need the 'Can edit agent workflows and templates' permission to call AI tools.",
            "field": None,
        }
    ]
    assert not upstream.calls
    assert not AIServiceCall.objects.exists()


def test_disabled_call_is_503_but_status_answers(tool_client, tool_user, disabled, upstream):
    response = call(tool_client)
    assert response.status_code == 503
    error = errors(response)[0]
    assert error["code"] == "ai_services_disabled"
    assert "AI_SERVICES_API_URL" in error["message"] and "AI_SERVICES_API_KEY" in error["message"]
    assert response["Retry-After"] == "60"
    assert tool_client.get(STATUS).status_code == 200
    assert tool_client.get(STATUS).json() == {"enabled": False, "tools": []}
    record = AIServiceCall.objects.get()
    assert (record.user, record.outcome, record.error_code) == (tool_user, "rejected", "ai_services_disabled")
    assert not upstream.calls


def test_unknown_tool(tool_client, agenta):
    response = call(tool_client, name="tools.syndarix.api.nope")
    assert response.status_code == 400
    assert errors(response) == [
        {"code": "unknown_tool", "message": "Unknown tool 'tools.syndarix.api.nope'.", "field": "name",
         "available_tools": [REFINE]}
    ]
    record = AIServiceCall.objects.get()
    assert (record.tool, record.outcome, record.error_code) == ("tools.syndarix.api.nope", "rejected", "unknown_tool")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, [{"code": "required", "field": "name"}]),
        ({"name": ""}, [{"code": "blank", "field": "name"}]),
        ({"name": ["x"]}, [{"code": "invalid", "field": "name"}]),
    ],
)
def test_malformed_request_body(tool_client, agenta, body, expected):
    response = tool_client.post(CALL, body, format="json")
    assert response.status_code == 400
    assert [{"code": e["code"], "field": e["field"]} for e in errors(response)] == expected


UNEXPECTED = "Unexpected field. Expected only: context, guidelines, prompt_template_json."


def _invalid(field: str, message: str) -> dict[str, Any]:
    return {"code": "invalid_arguments", "message": message, "field": field}


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({}, [_invalid("arguments.prompt_template_json", "This field is required.")]),
        ("a string", [_invalid("arguments", "Must be an object.")]),
        ({"prompt_template_json": ""}, [_invalid("arguments.prompt_template_json", "Must not be empty.")]),
        (
            {"prompt_template_json": "x" * 100_001},
            [_invalid("arguments.prompt_template_json", "Must be at most 100000 characters (it has 100001).")],
        ),
        (
            refine_args(guidelines="g" * 10_001, context="c" * 10_001),
            [
                _invalid("arguments.context", "Must be at most 10000 characters (it has 10001)."),
                _invalid("arguments.guidelines", "Must be at most 10000 characters (it has 10001)."),
            ],
        ),
        (
            refine_args(temperature=0.2, extra="x"),
            [
                _invalid("arguments.extra", UNEXPECTED),
                _invalid("arguments.temperature", UNEXPECTED),
            ],
        ),
        (
            {"prompt_template_json": {"messages": []}, "guidelines": 5, "context": None},
            [
                _invalid("arguments.context", "Must be a string."),
                _invalid("arguments.guidelines", "Must be a string."),
                _invalid("arguments.prompt_template_json", "Must be a string."),
            ],
        ),
        (
            {"prompt_template_json": "{'messages': []}"},
            [_invalid("arguments.prompt_template_json",
                      "Not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1).")],
        ),
        (
            {"prompt_template_json": json.dumps({"messages": [{"role": "bot", "content": "hi"}, {"role": "user"}]})},
            [
                _invalid("arguments.prompt_template_json.messages.0.role",
                         "'bot' is not one of: system, developer, user, assistant."),
                _invalid("arguments.prompt_template_json.messages.1.content", "This field is required."),
            ],
        ),
        (
            {"prompt_template_json": '{"messages": [{"role": "user", "content": 1}]}', "guidelines": "g" * 10_001},
            [
                _invalid("arguments.guidelines", "Must be at most 10000 characters (it has 10001)."),
                _invalid("arguments.prompt_template_json.messages.0.content", "Must be a string."),
            ],
        ),
    ],
    ids=["missing", "not-an-object", "empty", "too-long", "texts-too-long", "extra-keys", "wrong-types",
         "unparsable-template", "malformed-template", "all-problems-at-once"],
)
def test_invalid_arguments_name_each_problem(tool_client, tool_user, agenta, upstream, arguments, expected):
    response = call(tool_client, arguments=arguments)
    assert response.status_code == 400
    assert errors(response) == expected
    assert not upstream.calls
    record = AIServiceCall.objects.get()
    assert (record.outcome, record.error_code) == ("rejected", "invalid_arguments")
    assert expected[0]["field"] in record.error_message


def test_prompt_template_at_the_size_limit_is_accepted(tool_client, agenta, upstream):
    answer_agenta(upstream, agenta)
    padded = TEMPLATE_JSON[:-1] + ', "note": "' + "n" * (100_000 - len(TEMPLATE_JSON) - 12) + '"}'
    assert len(padded) == 100_000
    assert call(tool_client, arguments={"prompt_template_json": padded}).json()["isError"] is False


# --- rate limits (time as django-ratelimit sees it is controlled; nothing sleeps) ------------------


@pytest.fixture
def clock(ratelimit_clock, tool_user):
    return ratelimit_clock(tool_user)


@pytest.fixture
def always_ok(agenta, upstream):
    upstream.add(responses.POST, agenta, json=agenta_body(REFINED), status=200)
    return upstream


def test_ten_quick_calls_pass_and_the_eleventh_is_refused(tool_client, clock, always_ok):
    remaining = [call(tool_client)["X-RateLimit-Remaining"] for _ in range(10)]
    assert remaining == [str(n) for n in range(9, -1, -1)]
    response = call(tool_client)
    assert response.status_code == 429
    assert errors(response)[0]["code"] == "rate_limited"
    assert response["Retry-After"] == "9"  # the 10-second burst window ends 9 s from now
    assert len(always_ok.calls) == 10
    rejected = AIServiceCall.objects.filter(outcome="rejected").get()
    assert rejected.error_code == "rate_limited"
    clock.now += 10
    assert call(tool_client).status_code == 200


def test_no_more_than_thirty_calls_in_a_minute(tool_client, clock, always_ok):
    start, passed, retry_after = clock.now, [], {}
    for second in range(60):
        clock.now = start + second
        for _ in range(3):  # three attempts every second for a minute
            response = call(tool_client)
            if response.status_code == 200:
                passed.append(second)
            else:
                retry_after.setdefault(second, response["Retry-After"])
    burst = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]  # ten in the first seconds of each 10-second burst window
    assert passed == burst + [s + 10 for s in burst] + [s + 20 for s in burst]
    assert retry_after[3] == "6"  # refused by the burst limit until its window ends
    assert retry_after[30] == "29"  # refused by the minute limit until the minute ends
    clock.now = start + 60  # a new minute
    assert call(tool_client).status_code == 200
    assert len(always_ok.calls) == 31


def test_headers_report_the_tighter_limit(tool_client, clock, always_ok):
    start = clock.now
    for offset, count in ((0, 10), (10, 10), (20, 5)):
        clock.now = start + offset
        for _ in range(count):
            assert call(tool_client).status_code == 200
    clock.now = start + 30
    response = call(tool_client)
    assert (response["X-RateLimit-Limit"], response["X-RateLimit-Remaining"]) == ("30", "4")


def test_limits_are_per_user(tool_client, clock, always_ok):
    for _ in range(10):
        call(tool_client)
    assert call(tool_client).status_code == 429
    other = UserFactory()
    Permission.objects.get(codename="edit_workflows").user_set.add(other)
    assert call(client_for(other)).status_code == 200


class EchoTool(Tool):
    """A second tool, to show that a tool is one class and that limits are per tool."""

    name = f"{NAMESPACE}.echo"
    title = "Echo"
    description = "Returns its text."
    input_schema: ClassVar[dict] = {
        "type": "object", "additionalProperties": False, "required": ["text"],
        "properties": {"text": {"type": "string", "maxLength": 20}},
    }
    output_schema: ClassVar[dict] = {"type": "object", "properties": {"text": {"type": "string"}}}

    def run(self, arguments, *, request_id):
        return ToolResult(text=arguments["text"], structured={"text": arguments["text"]})


@pytest.fixture
def echo_tool(monkeypatch):
    monkeypatch.setattr(registry, "_tools", dict(registry._tools))
    registry.register(EchoTool)
    return EchoTool.name


def test_adding_a_tool_is_adding_a_class_and_limits_are_per_tool(tool_client, clock, always_ok, echo_tool):
    assert [t["name"] for t in tool_client.get(STATUS).json()["tools"]] == [REFINE, echo_tool]
    for _ in range(10):
        call(tool_client)
    assert call(tool_client).status_code == 429
    response = call(tool_client, name=echo_tool, arguments={"text": "hello"})
    assert response.status_code == 200
    assert response.json()["structuredContent"] == {"text": "hello"}
    assert re.fullmatch(r"[0-9a-f]{32}", response.json()["meta"]["trace_id"])
    bad = call(tool_client, name=echo_tool, arguments={"text": "x" * 21})
    assert errors(bad) == [_invalid("arguments.text", "Must be at most 20 characters (it has 21).")]


def test_registry_refuses_names_outside_the_namespace_and_duplicates(echo_tool):
    class Stray(EchoTool):
        name = "tools.other.echo"

    with pytest.raises(ValueError, match="must look like"):
        registry.register(Stray)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(EchoTool)


def test_rate_limits_can_be_switched_off(tool_client, settings, always_ok):
    settings.RATELIMIT_ENABLE = False
    for _ in range(12):
        response = call(tool_client)
        assert response.status_code == 200
    assert "X-RateLimit-Limit" not in response


def test_the_schema_documents_both_endpoints():
    schema = APIClient().get("/api/schema/", {"format": "json"})
    paths = schema.json()["paths"]
    assert set(paths["/api/v1/ai/services/tools/call"]["post"]["responses"]) == {
        "200", "400", "401", "403", "429", "503"}
    assert set(paths["/api/v1/ai/services/status"]["get"]["responses"]) == {"200", "401", "429"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_calls_cannot_exceed_the_burst_limit(tool_user, agenta, ratelimit_clock):
    """Fifteen simultaneous calls by one user: the shared Redis counter lets exactly ten through."""
    ratelimit_clock(tool_user)
    barrier = threading.Barrier(15)
    statuses: list[int] = []

    clients = [client_for(tool_user) for _ in range(15)]  # the token exists before the threads start

    def worker(web):
        try:
            barrier.wait()
            statuses.append(call(web).status_code)
        finally:
            connection.close()

    with responses.RequestsMock(assert_all_requests_are_fired=False) as upstream:
        upstream.add(responses.POST, agenta, json=agenta_body(REFINED), status=200)
        threads = [threading.Thread(target=worker, args=(web,)) for web in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(upstream.calls) == 10
    assert sorted(statuses) == [200] * 10 + [429] * 5
    assert AIServiceCall.objects.filter(outcome="ok").count() == 10
    assert AIServiceCall.objects.filter(outcome="rejected", error_code="rate_limited").count() == 5
