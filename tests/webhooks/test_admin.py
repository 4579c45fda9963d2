"""The webhook admin: adding an endpoint shows its secret once; rotate, enable and redeliver go through the
services; deliveries are listed with status code, duration, attempts and next attempt; staff who administer no
workspace see nothing of it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from agents.webhooks import services
from agents.webhooks.choices import DeliveryStatus
from agents.webhooks.dispatch import dispatch_step
from agents.webhooks.models import WebhookDelivery, WebhookEndpoint
from projects.choices import WorkspaceRole
from tests import factories

from .conftest import emit_events

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_nudge")]

ENDPOINTS = "/admin/agents/webhookendpoint/"
DELIVERIES = "/admin/agents/webhookdelivery/"


@pytest.fixture
def staff(superuser) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def test_adding_an_endpoint_shows_its_secret_once(staff, workspace):
    response = staff.post(f"{ENDPOINTS}add/", {
        "workspace": workspace.pk, "url": "http://127.0.0.1:9/hook", "description": "ops",
        "event_types": ["run.failed", "run.succeeded"], "is_active": "on",
    }, follow=True)
    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.event_types == ["run.succeeded", "run.failed"]
    assert endpoint.secret in response.content.decode()
    assert endpoint.secret not in staff.get(f"{ENDPOINTS}{endpoint.pk}/change/").content.decode()


def test_a_private_target_is_a_form_error(staff, workspace, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    response = staff.post(f"{ENDPOINTS}add/", {
        "workspace": workspace.pk, "url": "http://169.254.169.254/latest/", "event_types": ["run.failed"],
        "is_active": "on",
    })
    assert response.status_code == 200 and "public addresses only" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_change_page_and_list_show_the_deliveries(staff, project, receiver, make_endpoint):
    endpoint = make_endpoint(receiver)
    receiver.answers.append(503)
    emit_events(project, 1)
    dispatch_step(endpoint.pk)
    page = staff.get(f"{ENDPOINTS}{endpoint.pk}/change/").content.decode()
    assert "run.succeeded" in page and "503" in page and "Pending" in page
    listing = staff.get(DELIVERIES, {"status__exact": "pending"}).content.decode()
    assert "503" in listing and "Next attempt" in listing and "Duration (ms)" in listing


def test_actions_rotate_enable_and_redeliver(staff, project, receiver, make_endpoint):
    endpoint = make_endpoint(receiver)
    old_secret = endpoint.secret
    response = staff.post(ENDPOINTS, {"action": "rotate_secret", "_selected_action": [endpoint.pk]}, follow=True)
    endpoint.refresh_from_db()
    assert endpoint.secret != old_secret and endpoint.secret in response.content.decode()
    receiver.secret = endpoint.secret
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=False, disabled_reason="5 failed")
    staff.post(ENDPOINTS, {"action": "enable", "_selected_action": [endpoint.pk]})
    endpoint.refresh_from_db()
    assert endpoint.is_active and endpoint.disabled_reason == ""
    emit_events(project, 1)
    dispatch_step(endpoint.pk)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.SUCCEEDED
    response = staff.post(DELIVERIES, {"action": "redeliver", "_selected_action": [delivery.pk]}, follow=True)
    assert "1 delivery queued again" in response.content.decode()
    dispatch_step(endpoint.pk)
    assert len(receiver.succeeded()) == 2 and receiver.ids()[0] == receiver.ids()[1]


def test_staff_who_are_not_workspace_admins_see_no_endpoints(workspace, receiver):
    services.webhook_endpoint_create(workspace=workspace, url=receiver.url)
    member = factories.MembershipFactory(workspace=workspace, role=WorkspaceRole.OPERATOR).user
    member.is_staff = True
    member.save()
    member.user_permissions.add(*Permission.objects.filter(codename__in=[
        "view_webhookendpoint", "change_webhookendpoint", "view_webhookdelivery"]))
    client = Client()
    client.force_login(member)
    assert "127.0.0.1" not in client.get(ENDPOINTS).content.decode()
    membership = member.memberships.get()
    membership.role = WorkspaceRole.ADMIN
    membership.save()
    assert "127.0.0.1" in client.get(ENDPOINTS).content.decode()
