"""The registry admin mixin (on a throwaway AgentType admin) and the AGENTS_ENABLED banner."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from agents.models import AgentType
from agents.registry.admin import AgentTypeRegistryAdminMixin, ClassRegisteredFilter
from tests.factories import AgentTypeFactory, UserFactory

from .registry_admin_urls import ThrowawayAgentTypeAdmin, site

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.agents.registry_admin_urls")]

CHANGELIST = "/admin/agents/agenttype/"
SYNC_PAGE = "/admin/agents/agenttype/sync-registry/"


@pytest.fixture
def admin_client(superuser) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def staff_client(*codenames: str) -> Client:
    user = UserFactory(is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="agents", codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def types():
    return {
        "synced": AgentTypeFactory(name="Synced reviewer", slug="rev", handler="reviewer"),
        "missing": AgentTypeFactory(name="Missing class", slug="gone", handler="uninstalled"),
        "plain": AgentTypeFactory(name="Plain type", slug="plain", handler=""),
    }


def test_columns_and_filter_are_added_to_the_admins_own(rf, superuser):
    model_admin = ThrowawayAgentTypeAdmin(AgentType, site)
    request = rf.get(CHANGELIST)
    request.user = superuser
    assert model_admin.get_list_display(request) == [
        "name", "slug", "handler_display", "is_active", "class_registered"
    ]
    assert model_admin.get_list_filter(request) == ["is_active", ClassRegisteredFilter]

    class Minimal(AgentTypeRegistryAdminMixin, admin.ModelAdmin):
        pass

    minimal = Minimal(AgentType, site)
    assert minimal.get_list_display(request) == ["__str__", "handler_display", "class_registered"]
    assert "sync_from_registry" in minimal.get_actions(request)


def test_class_registered_is_true_false_or_unknown(types):
    model_admin = ThrowawayAgentTypeAdmin(AgentType, site)
    assert [model_admin.class_registered(types[k]) for k in ("synced", "missing", "plain")] == [True, False, None]
    assert model_admin.handler_display(types["plain"]) == "-"


def test_changelist_shows_handler_and_registration(admin_client, types):
    with CaptureQueriesContext(connection) as three_rows:
        response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    html = response.content.decode()
    assert "column-handler_display" in html and "column-class_registered" in html
    for icon in ("icon-yes.svg", "icon-no.svg", "icon-unknown.svg"):
        assert icon in html
    assert f'href="{SYNC_PAGE}"' in html
    assert '<option value="sync_from_registry">Sync from registry</option>' in html
    AgentTypeFactory.create_batch(10, handler="reviewer")
    with CaptureQueriesContext(connection) as thirteen_rows:
        admin_client.get(CHANGELIST)
    assert len(thirteen_rows) == len(three_rows)  # the columns cost no query per row


@pytest.mark.parametrize(("value", "expected"), [("yes", ["rev"]), ("no", ["gone"]), ("none", ["plain"])])
def test_class_registered_filter(admin_client, types, value, expected):
    response = admin_client.get(CHANGELIST, {"class_registered": value})
    assert sorted(obj.slug for obj in response.context["cl"].result_list) == expected


def test_action_syncs_the_whole_registry_and_reports_counts(admin_client, types):
    AgentTypeFactory(slug="tester", name="Tester (old)", handler="tester")
    response = admin_client.post(
        CHANGELIST, {"action": "sync_from_registry", "_selected_action": [types["plain"].pk], "index": 0}, follow=True
    )
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert messages == ["Synced agent types from the registry: 2 created, 1 updated, 0 unchanged, 0 deactivated."]
    assert AgentType.objects.get(slug="tester").name == "Tester"
    assert set(AgentType.objects.values_list("slug", flat=True)) == {"rev", "gone", "plain", "builder", "reviewer",
                                                                     "tester"}


def test_sync_page_previews_as_a_dry_run_then_syncs_on_post(admin_client, types):
    response = admin_client.get(SYNC_PAGE)
    assert response.status_code == 200
    preview = response.context["preview"]
    assert preview.dry_run and preview.created == ["builder", "reviewer", "tester"]
    assert preview.deactivated == ["gone"]
    assert AgentType.objects.count() == 3  # the preview wrote nothing
    html = response.content.decode()
    assert "<code>gone</code>" in html and 'name="deactivate_missing"' in html

    response = admin_client.post(SYNC_PAGE, {"deactivate_missing": "on"}, follow=True)
    assert response.redirect_chain == [(CHANGELIST, 302)]
    assert [str(m) for m in response.context["messages"]] == [
        "Synced agent types from the registry: 3 created, 0 updated, 0 unchanged, 1 deactivated."
    ]
    assert not AgentType.objects.get(slug="gone").is_active

    response = admin_client.post(SYNC_PAGE, follow=True)
    assert [str(m) for m in response.context["messages"]] == [
        "Synced agent types from the registry: 0 created, 0 updated, 3 unchanged, 0 deactivated."
    ]


def test_syncing_needs_add_and_change_permissions(types):
    viewer = staff_client("view_agenttype")
    assert viewer.get(SYNC_PAGE).status_code == 403
    assert viewer.post(SYNC_PAGE).status_code == 403
    response = viewer.get(CHANGELIST)
    assert response.status_code == 200
    assert "sync_from_registry" not in response.content.decode()
    editor = staff_client("view_agenttype", "add_agenttype", "change_agenttype")
    assert editor.post(SYNC_PAGE).status_code == 302
    assert AgentType.objects.filter(slug="reviewer").exists()


def test_anonymous_is_sent_to_login():
    response = Client().get(SYNC_PAGE)
    assert response.status_code == 302 and "/login/" in response["Location"]


# --- The AGENTS_ENABLED=false banner on every admin page. ---

BANNER = 'id="agents-disabled-banner"'


@pytest.mark.parametrize(
    ("path", "logged_in"),
    [("/admin/", True), (CHANGELIST, True), (f"{CHANGELIST}?class_registered=no", True), (SYNC_PAGE, True),
     ("/admin/agents/agenttype/add/", True), ("/admin/login/", False)],
)
def test_banner_on_every_admin_page_while_agents_are_disabled(admin_client, path, logged_in):
    client = admin_client if logged_in else Client()
    with override_settings(AGENTS_ENABLED=False):
        response = client.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    assert BANNER in html
    assert "Agents are disabled on this deployment (AGENTS_ENABLED=false)" in html
    assert BANNER not in client.get(path).content.decode()


def test_banner_keeps_the_admins_own_messages(admin_client):
    with override_settings(AGENTS_ENABLED=False):
        response = admin_client.post(SYNC_PAGE, follow=True)
    html = response.content.decode()
    assert BANNER in html and "Synced agent types from the registry" in html
