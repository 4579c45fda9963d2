"""The shared-context admin: read-only history, diff page, rollback with confirmation, add and delete
through the services."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agents.contexts import services as contexts
from agents.models import AgentContext, AgentContextVersion
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(superuser) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


@pytest.fixture
def context(project, user):
    ctx = contexts.context_create(project=project, name="release-plan", data={"goal": "ship"}, actor=user)
    contexts.context_write(ctx, {"goal": "test", "risk": "low"}, change_description="narrow")
    contexts.context_write(ctx, {"goal": "deploy", "risk": "high"}, change_description="go")
    return ctx


def change_url(context) -> str:
    return reverse("admin:agents_agentcontext_change", args=[context.pk])


def rollback_url(context, version: int) -> str:
    return reverse("admin:agents_agentcontext_rollback", args=[context.pk, version])


def diff_url(context) -> str:
    return reverse("admin:agents_agentcontext_diff", args=[context.pk])


def numbers(context) -> list[int]:
    return sorted(AgentContextVersion.objects.filter(context=context).values_list("version", flat=True))


def test_changelist_lists_contexts_in_constant_queries(admin_client, project):
    contexts.context_create(project=project, name="first")
    url = reverse("admin:agents_agentcontext_changelist")
    with CaptureQueriesContext(connection) as one:
        assert admin_client.get(url).status_code == 200
    for n in range(5):
        contexts.context_create(project=factories.ProjectFactory(), name=f"ctx-{n}",
                                instance=None)
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(url)
    assert response.status_code == 200
    assert b"ctx-4" in response.content
    assert len(one.captured_queries) == len(many.captured_queries)
    assert admin_client.get(url, {"scope": "shared", "q": "ctx"}).status_code == 200


def test_change_page_is_read_only_with_versions_newest_first(admin_client, context):
    response = admin_client.get(change_url(context))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="_save"' not in html
    shown = [int(n) for n in re.findall(r">v(\d+)</a>", html)]
    assert shown == [3, 2, 1]
    # Rollback buttons for every version but the current one.
    assert rollback_url(context, 1) in html and rollback_url(context, 2) in html
    assert rollback_url(context, 3) not in html
    assert "Roll back to this version" in html


def test_change_page_shows_only_the_newest_versions(admin_client, project, settings):
    ctx = contexts.context_create(project=project, name="long")
    for n in range(2, 56):
        contexts.context_write(ctx, {"n": n})
    html = admin_client.get(change_url(ctx)).content.decode()
    shown = [int(n) for n in re.findall(r">v(\d+)</a>", html)]
    assert shown == list(range(55, 5, -1))


def test_diff_page_shows_the_patch_and_both_versions(admin_client, context):
    response = admin_client.get(diff_url(context), {"from": 1, "to": 3})
    assert response.status_code == 200
    assert response.context["patch"] == contexts.context_diff(context, 1, 3)
    html = response.content.decode()
    assert "/risk" in html and "&quot;deploy&quot;" in html
    # Without a choice it compares the previous version with the current one.
    response = admin_client.get(diff_url(context))
    assert (response.context["first"], response.context["second"]) == (2, 3)


def test_diff_page_reports_missing_versions(admin_client, context):
    response = admin_client.get(diff_url(context), {"from": 1, "to": 9})
    assert response.status_code == 200
    assert "Version 9 does not exist" in response.content.decode()


@pytest.mark.parametrize(
    ("query", "shown", "warning"),
    [
        ({"from": str(10**30), "to": "3"}, (2, 3), "“1000000000000000000…” is not a version number; from v2 is shown."),
        ({"from": "1", "to": "-4"}, (1, 3), "“-4” is not a version number; to v3 is shown."),
        ({"from": "one", "to": "3"}, (2, 3), "“one” is not a version number; from v2 is shown."),
        ({"from": "0", "to": "3"}, (2, 3), "“0” is not a version number; from v2 is shown."),
    ],
)
def test_diff_page_reports_a_bad_version_number_and_shows_the_default(admin_client, context, query, shown, warning):
    response = admin_client.get(diff_url(context), query)
    assert response.status_code == 200
    assert (response.context["first"], response.context["second"]) == shown
    assert response.context["problems"] == [warning]
    assert warning in response.content.decode()
    assert response.context["patch"] == contexts.context_diff(context, *shown)


@pytest.mark.parametrize("method", ["get", "post"])
def test_rollback_to_a_version_beyond_the_column_is_a_message(admin_client, context, method):
    response = getattr(admin_client, method)(rollback_url(context, 10**30))
    assert response.status_code == 302 and response["Location"] == change_url(context)
    assert numbers(context) == [1, 2, 3]


def test_rollback_asks_for_confirmation_then_calls_the_service(admin_client, context, superuser):
    response = admin_client.get(rollback_url(context, 1))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Yes, roll back to version 1" in html and "version 4" in html
    assert numbers(context) == [1, 2, 3]  # asking changes nothing

    response = admin_client.post(rollback_url(context, 1), {"change_description": "back to basics"})
    assert response.status_code == 302 and response["Location"] == change_url(context)
    version = contexts.context_read(context)
    assert (version.version, version.data, version.restored_from, version.change_description) == (
        4, {"goal": "ship"}, 1, "back to basics")
    assert version.created_by_user == superuser
    messages = [str(m) for m in admin_client.get(change_url(context)).context["messages"]]
    assert any("it is now version 4" in m for m in messages)


def test_rollback_to_the_current_version_is_refused(admin_client, context):
    response = admin_client.get(rollback_url(context, 3))
    assert response.status_code == 302
    response = admin_client.post(rollback_url(context, 3), follow=True)
    assert "already the current version" in response.content.decode()
    assert numbers(context) == [1, 2, 3]


def test_rollback_to_a_pruned_version_is_refused(admin_client, context, settings):
    settings.AGENT_CONTEXT_HISTORY_LIMIT = 2
    contexts.context_write(context, {"goal": "later"})
    response = admin_client.post(rollback_url(context, 1), follow=True)
    assert "removed by the retention policy" in response.content.decode()
    assert numbers(context) == [3, 4]


def test_rollback_needs_the_change_permission(context, user):
    staff = factories.UserFactory(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_agentcontext"))
    factories.MembershipFactory(workspace=context.project.workspace, user=staff, role="operator")
    client = Client()
    client.force_login(staff)
    assert client.get(diff_url(context)).status_code == 200
    assert client.get(rollback_url(context, 1)).status_code == 403
    assert client.post(rollback_url(context, 1)).status_code == 403
    assert numbers(context) == [1, 2, 3]
    anonymous = Client().post(rollback_url(context, 1))
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]


def test_add_creates_version_one_through_the_service(admin_client, project, superuser):
    url = reverse("admin:agents_agentcontext_add")
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(url, {"project": project.pk, "name": "notes", "data": '{"a": 1}',
                                       "change_description": "start"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    ctx = AgentContext.objects.get(name="notes")
    version = contexts.context_read(ctx)
    assert (ctx.current_version, version.data, version.created_by_user, version.change_description) == (
        1, {"a": 1}, superuser, "start")


@pytest.mark.parametrize(("data", "message"), [('{"a": "\\u0000"}', "NUL"), ("[1]", "JSON object"),
                                               ("{", "Enter a valid JSON")])
def test_add_refuses_bad_data(admin_client, project, data, message):
    response = admin_client.post(reverse("admin:agents_agentcontext_add"),
                                 {"project": project.pk, "name": "bad", "data": data})
    assert response.status_code == 200
    assert message in str(response.context["adminform"].form.errors["data"])
    assert not AgentContext.objects.exists()


def test_add_refuses_a_duplicate_name_and_a_foreign_agent(admin_client, context):
    url = reverse("admin:agents_agentcontext_add")
    response = admin_client.post(url, {"project": context.project.pk, "name": "release-plan", "data": "{}"})
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        "The project already has a shared context with this name."  # in words, not the constraint's name
    ]
    foreign = factories.AgentFactory()
    response = admin_client.post(url, {"project": context.project.pk, "instance": foreign.pk, "name": "x",
                                       "data": "{}"})
    assert "instance" in response.context["adminform"].form.errors
    assert AgentContext.objects.count() == 1


def test_delete_goes_through_the_service(admin_client, context):
    url = reverse("admin:agents_agentcontext_delete", args=[context.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    assert "release-plan (3 versions)" in response.content.decode()
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert not AgentContext.objects.exists() and not AgentContextVersion.objects.exists()


def test_version_admin_is_read_only(admin_client, context):
    version = AgentContextVersion.objects.get(context=context, version=2)
    listing = admin_client.get(reverse("admin:agents_agentcontextversion_changelist"),
                               {"context__id__exact": context.pk})
    assert listing.status_code == 200
    assert listing.context["cl"].result_count == 3
    detail = admin_client.get(reverse("admin:agents_agentcontextversion_change", args=[version.pk]))
    assert detail.status_code == 200
    html = detail.content.decode()
    assert 'name="_save"' not in html and "&quot;risk&quot;: &quot;low&quot;" in html
    assert rollback_url(context, 2) in html
    assert admin_client.get(reverse("admin:agents_agentcontextversion_add")).status_code == 403
    assert admin_client.post(reverse("admin:agents_agentcontextversion_delete", args=[version.pk]),
                             {"post": "yes"}).status_code == 403
    assert numbers(context) == [1, 2, 3]


# --- Pins: set and cleared from the context's page. ---


def pin_url(context, version: int, verb: str = "pin") -> str:
    return reverse(f"admin:agents_agentcontext_{verb}", args=[context.pk, version])


def test_versions_are_pinned_and_unpinned_from_the_context_page(admin_client, context):
    html = admin_client.get(change_url(context)).content.decode()
    assert f'formaction="{pin_url(context, 1)}"' in html and 'id="context-pin-form"' in html
    response = admin_client.post(pin_url(context, 1))
    assert response.status_code == 302 and response.url == change_url(context)
    assert AgentContextVersion.objects.get(context=context, version=1).pinned
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    assert messages == [f"Version 1 of “{context}” pinned."]
    html = admin_client.get(change_url(context)).content.decode()
    assert f'formaction="{pin_url(context, 1, "unpin")}"' in html
    admin_client.post(pin_url(context, 1, "unpin"))
    assert not AgentContextVersion.objects.get(context=context, version=1).pinned


def test_pinning_is_post_only_and_reports_a_missing_version(admin_client, context):
    assert admin_client.get(pin_url(context, 1)).status_code == 405
    response = admin_client.post(pin_url(context, 99))
    assert response.status_code == 302
    assert [str(m) for m in get_messages(response.wsgi_request)][0].startswith(f"Version 99 of “{context}” not pinned:")
    assert not AgentContextVersion.objects.filter(context=context, pinned=True).exists()


def test_pinning_needs_the_change_permission(context):
    staff = factories.UserFactory(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_agentcontext"))
    factories.MembershipFactory(workspace=context.project.workspace, user=staff, role="operator")
    client = Client()
    client.force_login(staff)
    assert "formaction" not in client.get(change_url(context)).content.decode()
    assert client.post(pin_url(context, 1)).status_code == 403
    assert not AgentContextVersion.objects.filter(context=context, pinned=True).exists()
