"""The AI services API: status, tools/call, permission, configuration, validation, rate limits, records."""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

import pytest
import redis
import responses
from django.contrib.auth.models import Group, Permission
from rest_framework.test import APIClient

from aiservices import services
from aiservices.choices import CallOutcome
from aiservices.models import AIServiceCall
from aiservices.tools import NAMESPACE, Tool, ToolResult, registry
from aiservices.views import StatusView
from tests.conftest import client_for
from tests.factories import UserFactory
from tests.threads import run_concurrently

from .conftest import (
    DISABLED_SETTINGS,
    REFINE,
    REFINED,
    TEMPLATE_JSON,
    agenta_body,
    answer_agenta,
    apply,
    openai_body,
    refine_args,
)

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


def test_the_offline_stand_in_refines_without_an_upstream_and_says_so(tool_client, settings, upstream):
    """``make run`` (debug, no AI_SERVICES_API_URL) answers through the offline stand-in: nothing is sent anywhere
    (``upstream`` refuses every URL), the variables stay, the guidelines land in the system message without braces."""
    apply(settings, {**DISABLED_SETTINGS, "AI_SERVICES_PROVIDER": "offline"})
    template = {"messages": [{"role": "system", "content": "You answer   questions about {{country}}.\n\n\n\nBe kind."},
                             {"role": "user", "content": "{{question}}"}]}
    response = call(tool_client, arguments={"prompt_template_json": json.dumps(template),
                                            "guidelines": "Be precise; never invent {{facts}}."})
    assert response.status_code == 200
    body = response.json()
    assert body["isError"] is False and body["content"][0]["text"].startswith("[offline stand-in:")
    assert body["structuredContent"]["messages"] == [
        {"role": "system", "content": "You answer questions about {{country}}.\n\nBe kind."
                                      "\n\nGuidelines: Be precise; never invent facts."},
        {"role": "user", "content": "{{question}}"},
    ]
    assert AIServiceCall.objects.get().provider == "offline"


def test_the_settings_choose_the_offline_stand_in_only_for_debug_without_a_url():
    import subprocess
    import sys

    from django.conf import settings

    def provider(**env):
        code = "import django; django.setup(); from django.conf import settings; print(settings.AI_SERVICES_PROVIDER)"
        return subprocess.run(
            [sys.executable, "-c", code], cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60,
            env={"DJANGO_SETTINGS_MODULE": "syndarix.settings", "DJANGO_ENV_FILE": "", "PATH": "/usr/bin:/bin",
                 "DJANGO_SECRET_KEY": "x" * 50, **env},
        )

    assert provider(DJANGO_DEBUG="true").stdout.strip() == "offline"
    # production never answers through the stand-in: its default stays agenta (disabled until configured), and
    # naming the stand-in stops it at start-up
    assert provider(DJANGO_DEBUG="false").stdout.strip() == "agenta"
    refused = provider(DJANGO_DEBUG="false", AI_SERVICES_PROVIDER="offline")
    assert refused.returncode != 0 and "AI_SERVICES_PROVIDER=offline" in refused.stderr


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


def test_a_template_nested_too_deeply_is_invalid_arguments_not_a_500(tool_client, agenta, upstream):
    deep = "[" * 50_000 + "]" * 50_000  # 100,000 characters: within the size limit
    response = call(tool_client, arguments={"prompt_template_json": deep})
    assert response.status_code == 400
    assert errors(response) == [
        _invalid("arguments.prompt_template_json", "Nested too deeply: at most 64 levels of objects and lists.")
    ]
    assert not upstream.calls
    record = AIServiceCall.objects.get()
    assert (record.outcome, record.error_code) == ("rejected", "invalid_arguments")


def test_a_request_body_nested_too_deeply_is_400(tool_client, agenta):
    body = '{"name": "' + REFINE + '", "arguments": {"x": ' + "[" * 50_000 + "]" * 50_000 + "}}"
    response = tool_client.post(CALL, body, content_type="application/json")
    assert response.status_code == 400
    assert errors(response) == [
        {"code": "parse_error", "message": "JSON parse error - the document is nested too deeply.", "field": None}
    ]


class BrokenTool(Tool):
    """A tool whose own argument check has a defect."""

    name = f"{NAMESPACE}.broken"
    title = "Broken"
    description = "Fails while checking its arguments."
    input_schema: ClassVar[dict] = {"type": "object"}
    output_schema: ClassVar[dict] = {"type": "object"}

    def check_arguments(self, arguments, problems):
        raise RuntimeError("defect")

    def run(self, arguments, *, request_id):
        raise AssertionError("never runs")


def test_a_defect_before_the_tool_runs_is_recorded_and_answered(tool_client, tool_user, agenta, monkeypatch, caplog):
    monkeypatch.setattr(registry, "_tools", dict(registry._tools))
    registry.register(BrokenTool)
    response = call(tool_client, name=BrokenTool.name, arguments={}, HTTP_X_REQUEST_ID="req-broken")
    assert response.status_code == 200
    assert response.json() == {
        "content": [{"type": "text", "text": "The call failed unexpectedly."}],
        "isError": True,
        "meta": {"trace_id": "req-broken"},
    }
    record = AIServiceCall.objects.get()
    assert (record.user, record.tool, record.outcome, record.error_code, record.trace_id) == (
        tool_user, BrokenTool.name, "tool_error", "internal_error", "req-broken")
    assert any(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in caplog.records)


def test_a_rate_limiter_failure_is_recorded_and_answered(tool_client, tool_user, agenta, upstream, monkeypatch):
    def unreachable(*args, **kwargs):
        raise redis.exceptions.ConnectionError("Redis is down")

    monkeypatch.setattr(services, "check_sliding_window", unreachable)
    response = call(tool_client)
    assert response.status_code == 200
    assert response.json()["isError"] is True
    assert "X-RateLimit-Limit" not in response
    record = AIServiceCall.objects.get()
    assert (record.outcome, record.error_code) == ("tool_error", "internal_error")
    assert not upstream.calls


def test_prompt_template_at_the_size_limit_is_accepted(tool_client, agenta, upstream):
    answer_agenta(upstream, agenta)
    padded = TEMPLATE_JSON[:-1] + ', "note": "' + "n" * (100_000 - len(TEMPLATE_JSON) - 12) + '"}'
    assert len(padded) == 100_000
    assert call(tool_client, arguments={"prompt_template_json": padded}).json()["isError"] is False


# --- rate limits (time as the limiters see it is controlled; nothing sleeps) ------------------------


@pytest.fixture
def clock(ratelimit_clock, tool_user):
    return ratelimit_clock(tool_user)


@pytest.fixture
def always_ok(agenta, upstream):
    upstream.add(responses.POST, agenta, json=agenta_body(REFINED), status=200)
    return upstream


def attempt(client, clock, at: float, count: int) -> list[tuple[float, Any]]:
    """``count`` calls at ``clock`` time ``at``: ``[(at, response), ...]``."""
    clock.now = at
    return [(at, call(client)) for _ in range(count)]


def most_in_any_span(times: list[float], seconds: float) -> int:
    """The largest number of ``times`` inside any half-open span ``[t, t + seconds)``."""
    return max((sum(1 for u in times if t <= u < t + seconds) for t in times), default=0)


def test_ten_quick_calls_pass_and_the_eleventh_is_refused(tool_client, clock, always_ok):
    remaining = [call(tool_client)["X-RateLimit-Remaining"] for _ in range(10)]
    assert remaining == [str(n) for n in range(9, -1, -1)]
    response = call(tool_client)
    assert response.status_code == 429
    assert errors(response)[0]["code"] == "rate_limited"
    assert response["Retry-After"] == "10"  # the ten calls leave the 10-second window 10 s from now
    assert len(always_ok.calls) == 10
    rejected = AIServiceCall.objects.filter(outcome="rejected").get()
    assert rejected.error_code == "rate_limited"
    clock.now += 9.999
    assert call(tool_client)["Retry-After"] == "1"
    clock.now += 0.001
    assert call(tool_client).status_code == 200


def test_calls_straddling_a_window_edge_count_together(tool_client, clock, always_ok):
    """Ten calls at 9 s and ten at 10 s (a fixed 10-second window's edge): only the first ten pass."""
    start = clock.now
    results = attempt(tool_client, clock, start + 9, 10) + attempt(tool_client, clock, start + 10, 10)
    assert [r.status_code for _, r in results] == [200] * 10 + [429] * 10
    assert results[-1][1]["Retry-After"] == "9"
    assert len(always_ok.calls) == 10


def test_no_more_than_thirty_calls_in_any_minute(tool_client, clock, always_ok):
    """Ten calls every 10 s for 90 s, starting mid-minute: no 60-second span holds more than 30."""
    start = clock.now + 35  # the first three bursts fill a fixed minute window, the next three a new one
    results = [r for burst in range(9) for r in attempt(tool_client, clock, start + 10 * burst, 10)]
    passed = [at - start for at, r in results if r.status_code == 200]
    assert passed == [t for t in (0, 10, 20, 60, 70, 80) for _ in range(10)]
    assert most_in_any_span(passed, 60) == 30
    assert most_in_any_span(passed, 10) == 10
    refused = {at - start: r["Retry-After"] for at, r in results if r.status_code == 429}
    # refused by the minute window until the calls made at 0 s leave it at 60 s
    assert refused == {30: "30", 40: "20", 50: "10"}
    assert len(always_ok.calls) == 60


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


def test_refused_calls_are_bounded_per_user_whatever_the_tool(tool_client, tool_user, clock, agenta, upstream):
    """Unknown tool names each have no per-tool budget, so a per-user limit counts every call first:
    at most 20 in any 10 seconds and 60 in any minute are recorded; refusals past it are not."""
    statuses = [call(tool_client, name=f"tools.syndarix.api.nope{i}").status_code for i in range(25)]
    assert statuses == [400] * 20 + [429] * 5
    assert AIServiceCall.objects.filter(user=tool_user).count() == 20
    response = call(tool_client, name="tools.syndarix.api.nope")
    assert response.status_code == 429
    assert response["Retry-After"] == "10"
    for _ in range(5):  # a minute of bursts: the per-minute window caps the records at 60
        clock.now += 10
        for i in range(25):
            call(tool_client, name=f"tools.syndarix.api.nope{i}")
    assert AIServiceCall.objects.filter(user=tool_user).count() == 60
    assert not upstream.calls


def test_calls_while_disabled_are_bounded_per_user(tool_client, tool_user, clock, disabled):
    statuses = [call(tool_client).status_code for _ in range(25)]
    assert statuses == [503] * 20 + [429] * 5
    assert AIServiceCall.objects.filter(user=tool_user, error_code="ai_services_disabled").count() == 20
    assert AIServiceCall.objects.count() == 20


def test_invalid_arguments_use_the_tool_budget(tool_client, tool_user, clock, always_ok):
    statuses = [call(tool_client, arguments={}).status_code for _ in range(12)]
    assert statuses == [400] * 10 + [429] * 2
    assert AIServiceCall.objects.filter(error_code="invalid_arguments").count() == 10
    assert AIServiceCall.objects.filter(error_code="rate_limited").count() == 2
    assert not always_ok.calls


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
    assert (response["X-RateLimit-Limit"], response["X-RateLimit-Remaining"]) == ("20", "8")  # the per-user burst
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
        "200", "400", "401", "403", "413", "429", "503"}
    assert set(paths["/api/v1/ai/services/status"]["get"]["responses"]) == {"200", "401", "429", "503"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_calls_cannot_exceed_the_burst_limit(tool_user, agenta):
    """Fifteen simultaneous calls by one user, on the real clock: the shared Redis log lets exactly ten through."""
    clients = [client_for(tool_user) for _ in range(15)]  # the token exists before the threads start

    with responses.RequestsMock(assert_all_requests_are_fired=False) as upstream:
        upstream.add(responses.POST, agenta, json=agenta_body(REFINED), status=200)
        statuses = run_concurrently(15, lambda index: call(clients[index]).status_code)
        assert len(upstream.calls) == 10
    assert sorted(statuses) == [200] * 10 + [429] * 5
    assert AIServiceCall.objects.filter(outcome="ok").count() == 10
    assert AIServiceCall.objects.filter(outcome="rejected", error_code="rate_limited").count() == 5
