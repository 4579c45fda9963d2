"""Admin: the read-only call list and the "Refine a prompt" page."""

from __future__ import annotations

import html
import json

import pytest
import responses
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from aiservices.models import AIServiceCall
from tests.factories import UserFactory

from .conftest import REFINE, REFINED, TEMPLATE, TEMPLATE_JSON, answer_agenta, grant_tools

pytestmark = pytest.mark.django_db

REFINE_URL = "/admin/aiservices/promptrefinement/"
CALLS_URL = "/admin/aiservices/aiservicecall/"


def login(user) -> Client:
    web = Client()
    web.force_login(user)
    return web


@pytest.fixture
def editor(db):
    """Staff with the tool permission (and nothing else)."""
    user = UserFactory(username="editor", is_staff=True)
    grant_tools(user)
    return user


def record(**kwargs) -> AIServiceCall:
    return AIServiceCall.objects.create(**{"tool": REFINE, "outcome": "ok", "trace_id": "t-1", **kwargs})


# --- call list -----------------------------------------------------------------------------------


def test_staff_who_are_not_superusers_see_only_their_own_calls(superuser):
    """Calls belong to no workspace: other staff see their own, superusers every call."""
    from django.contrib.auth.models import Permission

    staff = UserFactory(username="caller", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_aiservicecall"))
    mine, theirs = record(user=staff, trace_id="t-mine"), record(user=superuser, trace_id="t-theirs")
    text = login(staff).get(CALLS_URL).content.decode()
    assert "t-mine" in text and "t-theirs" not in text
    assert login(staff).get(f"{CALLS_URL}{theirs.pk}/change/").status_code == 302  # "doesn't exist"
    assert login(staff).get(f"{CALLS_URL}{mine.pk}/change/").status_code == 200
    everything = login(superuser).get(CALLS_URL).content.decode()
    assert "t-mine" in everything and "t-theirs" in everything



def test_call_list_is_read_only(superuser):
    call = record(user=superuser, tokens=42, duration_ms=830)
    record(outcome="tool_error", error_message="The AI service failed (HTTP 500).", trace_id="t-2")
    web = login(superuser)
    page = web.get(CALLS_URL)
    assert page.status_code == 200
    text = page.content.decode()
    assert "refine_prompt" in text and "Tool error" in text and "t-2" in text
    assert f"{CALLS_URL}add/" not in text
    assert 'href="/admin/aiservices/promptrefinement/"' in text  # the "Refine a prompt" object tool
    detail = web.get(f"{CALLS_URL}{call.pk}/change/")
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    assert web.post(f"{CALLS_URL}{call.pk}/change/", {"tool": "x"}).status_code == 403
    assert web.get(f"{CALLS_URL}{call.pk}/delete/").status_code == 403
    assert AIServiceCall.objects.get(pk=call.pk).tool == REFINE


def test_call_list_query_count_does_not_grow_with_rows(superuser):
    web = login(superuser)
    record(user=superuser)
    with CaptureQueriesContext(connection) as one:
        web.get(CALLS_URL)
    for _ in range(6):
        record(user=UserFactory())
    with CaptureQueriesContext(connection) as seven:
        assert web.get(CALLS_URL).status_code == 200
    assert len(seven) == len(one)


def test_call_list_search_and_filter(superuser):
    record(trace_id="needle-trace")
    record(trace_id="other", outcome="rejected")
    web = login(superuser)
    assert "needle-trace" in web.get(CALLS_URL, {"q": "needle"}).content.decode()
    filtered = web.get(CALLS_URL, {"outcome__exact": "rejected"}).content.decode()
    assert "other" in filtered and "needle-trace" not in filtered


# --- refine page: access ---------------------------------------------------------------------------


def test_refine_page_is_listed_and_shown_to_staff_with_the_permission(editor, agenta):
    web = login(editor)
    index = web.get("/admin/").content.decode()
    assert "Refine a prompt" in index and REFINE_URL in index
    page = web.get(REFINE_URL)
    assert page.status_code == 200
    text = page.content.decode()
    assert "<h1>Refine a prompt</h1>" in text
    assert 'name="template"' in text and 'name="guidelines"' in text
    assert "AI services are disabled" not in text


def test_refine_page_needs_the_permission(agenta):
    staff = UserFactory(is_staff=True)
    web = login(staff)
    assert web.get(REFINE_URL).status_code == 403
    assert "Refine a prompt" not in web.get("/admin/").content.decode()


def test_refine_page_needs_staff(agenta, tool_user):
    response = login(tool_user).get(REFINE_URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_refine_page_says_when_disabled(editor, disabled):
    text = login(editor).get(REFINE_URL).content.decode()
    assert "AI services are disabled" in text
    assert "AI_SERVICES_API_URL, AI_SERVICES_API_KEY" in text
    assert 'value="Refine" disabled' in text


# --- refine page: results --------------------------------------------------------------------------


def test_refine_shows_original_and_refined_side_by_side(editor, agenta, upstream):
    answer_agenta(upstream, agenta)
    response = login(editor).post(REFINE_URL, {"template": TEMPLATE_JSON, "guidelines": "Be precise."})
    assert response.status_code == 200
    text = response.content.decode()
    assert "Made the system message precise." in text
    assert "You answer questions about" in text  # original
    assert "Answer precisely and cite facts." in text  # refined
    assert '<mark class="refine-var">{{country}}</mark>' in text
    assert '<mark class="refine-var">{{ country }}</mark>' in text
    assert 'id="copy-refined"' in text
    refined = json.loads(html.unescape(text.split('id="refined-json"')[1].split(">", 1)[1].split("</textarea>")[0]))
    assert refined == {**TEMPLATE, "messages": REFINED["messages"]}
    assert "trace-agenta-1" in text
    sent = json.loads(upstream.calls[0].request.body)["inputs"]
    assert sent["__ag_guidelines"] == "Be precise."
    call = AIServiceCall.objects.get()
    assert (call.user, call.outcome) == (editor, "ok")


def test_refine_shows_field_problems(editor, agenta, upstream):
    bad = json.dumps({"messages": [{"role": "bot", "content": "x"}]})
    text = login(editor).post(REFINE_URL, {"template": bad, "guidelines": "g" * 10_001}).content.decode()
    assert "messages.0.role: &#x27;bot&#x27; is not one of: system, developer, user, assistant." in text
    assert "Must be at most 10000 characters (it has 10001)." in text
    assert not upstream.calls
    assert AIServiceCall.objects.get().outcome == "rejected"


def test_refine_shows_a_template_nested_too_deeply_under_its_field(editor, agenta, upstream):
    response = login(editor).post(REFINE_URL, {"template": "[" * 50_000 + "]" * 50_000})
    assert response.status_code == 200
    assert "Nested too deeply: at most 64 levels of objects and lists." in response.content.decode()
    assert not upstream.calls
    assert AIServiceCall.objects.get().error_code == "invalid_arguments"


def test_refine_shows_tool_errors(editor, agenta, upstream):
    upstream.add(responses.POST, agenta, body="boom", status=502)
    text = login(editor).post(REFINE_URL, {"template": TEMPLATE_JSON}).content.decode()
    assert "The prompt could not be refined." in text
    assert "The AI service failed (HTTP 502)." in text
    assert "boom" not in text
    assert 'id="refined-json"' not in text


def test_refine_page_shares_the_api_rate_limit(editor, agenta, upstream, ratelimit_clock):
    ratelimit_clock(editor)
    answer_agenta(upstream, agenta)
    web = login(editor)
    for _ in range(10):
        assert "Made the system message precise." in web.post(REFINE_URL, {"template": TEMPLATE_JSON}).content.decode()
    text = web.post(REFINE_URL, {"template": TEMPLATE_JSON}).content.decode()
    assert "Too many refinements; try again in" in text
    assert len(upstream.calls) == 10
