"""The admin site's shared pieces: the read-only admin mixin and the index sections apps contribute."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

from agents.admin import AgentInstanceAdmin, AgentTransitionAdmin, AgentTransitionInline
from agents.contexts import services as contexts
from agents.contexts.admin import AgentContextVersionAdmin, AgentContextVersionInline
from agents.models import AgentContextVersion, AgentInstance, AgentTransition
from syndarix.admin_site import ReadOnlyAdminMixin, SyndarixAdminSite

pytestmark = pytest.mark.django_db

READ_ONLY = [
    (AgentTransitionAdmin, AgentTransition, None),
    (AgentContextVersionAdmin, AgentContextVersion, None),
    (AgentTransitionInline, AgentInstance, "inline"),
    (AgentContextVersionInline, AgentContextVersion, "inline"),
]


@pytest.mark.parametrize(("admin_class", "model", "kind"), READ_ONLY)
def test_read_only_admins_refuse_every_write_even_to_superusers(superuser, admin_class, model, kind):
    assert issubclass(admin_class, ReadOnlyAdminMixin)
    request = RequestFactory().get("/")
    request.user = superuser
    model_admin = admin_class(model if kind is None else admin_class.model, admin.site)
    args = (request, None) if kind else (request,)
    assert model_admin.has_add_permission(*args) is False
    assert model_admin.has_change_permission(request, None) is False
    assert model_admin.has_delete_permission(request, None) is False
    assert model_admin.has_view_permission(request, None) is True


def test_read_only_pages_render_without_save_or_delete(client, superuser, agent, project):
    client.force_login(superuser)
    context = contexts.context_create(project=project, name="notes", data={"a": 1})
    version = AgentContextVersion.objects.get(context=context)
    row = AgentTransition.objects.get(agent=agent)
    for url in (
        reverse("admin:agents_agenttransition_change", args=[row.pk]),
        reverse("admin:agents_agentcontextversion_change", args=[version.pk]),
    ):
        html = client.get(url).content.decode()
        assert 'name="_save"' not in html and "deletelink" not in html
    html = client.get(reverse("admin:agents_agentinstance_change", args=[agent.pk])).content.decode()
    assert "spawned" in html  # the ledger inline shows its row ...
    assert 'name="transitions-0-DELETE"' not in html and 'name="transitions-0-reason"' not in html  # ... read-only
    assert client.post(reverse("admin:agents_agenttransition_add"), {}).status_code == 403


def test_agent_columns_are_labelled_by_what_they_show():
    assert AgentInstanceAdmin.effective_template_display.short_description == "Effective template"
    assert AgentInstanceAdmin.agent_type_schema.short_description == "Config schema"


# --- Index sections. ---

APPS = {"projects", "agents", "aiservices", "buildkit"}


def test_the_admin_site_imports_no_app():
    """``syndarix/`` is plumbing: what the index shows comes from the apps' own ``register_index_section`` calls."""
    path = Path(settings.BASE_DIR) / "syndarix" / "admin_site.py"
    imported = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            imported.append(node.module or "")
    assert [name for name in imported if name.split(".")[0] in APPS] == []


def test_apps_contribute_their_index_sections():
    names = [section.name for section in admin.site.index_sections()]
    assert names[:2] == ["agents.runtime", "agents.project_summary"]


def test_index_sections_are_ordered_and_hidden_when_they_return_none(rf, superuser):
    site = SyndarixAdminSite(name="sections_test")
    site.register_index_section("b", template="admin/agents/index_runtime.html", context=lambda r: {"b": 1},
                                order=2, css=("x.css",))
    site.register_index_section("a", template="admin/agents/index_runtime.html", context=lambda r: {"a": 1},
                                order=1, css=("x.css",))
    site.register_index_section("hidden", template="nope.html", context=lambda r: None, order=0)
    site.register_index_section("b", template="admin/agents/index_runtime.html", context=lambda r: {"b": 2},
                                order=2)  # the same name again replaces the section
    assert [s.name for s in site.index_sections()] == ["hidden", "a", "b"]
    request = rf.get("/admin/")
    request.user = superuser
    response = site.index(request)
    assert [s.name for s in response.context_data["index_sections"]] == ["a", "b"]
    assert response.context_data["a"] == 1 and response.context_data["b"] == 2
    assert response.context_data["index_css"] == ["x.css"]


def test_no_dead_view_site_link_and_a_favicon(client, superuser):
    client.force_login(superuser)
    html = client.get(reverse("admin:index")).content.decode()
    assert "View site" not in html
    assert '<link rel="icon" href="/favicon.ico" type="image/svg+xml">' in html
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon["Content-Type"] == "image/svg+xml"
    assert icon.content.startswith(b"<svg") and "max-age=86400" in icon["Cache-Control"]
    assert client.post("/favicon.ico").status_code == 405


def test_a_refused_admin_page_is_an_admin_page_not_a_bare_403(client, project):
    from django.contrib.auth.models import Permission

    from tests.factories import MembershipFactory, UserFactory

    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_agentinstance"))
    MembershipFactory(workspace=project.workspace, user=staff, role="viewer")
    client.force_login(staff)
    response = client.get(reverse("admin:agents_agentinstance_spawn"))
    assert response.status_code == 403
    html = response.content.decode()
    assert "Syndarix administration" in html and "Not allowed" in html and reverse("admin:index") in html
