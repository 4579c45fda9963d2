"""The webhook API: workspace admins only (others who see the workspace 403, strangers 404), validation (the SSRF
rule, event types), the secret shown once, rotation, deliveries and redelivery, idempotency, 401 and 429."""

from __future__ import annotations

import time
import uuid

import pytest
from standardwebhooks import Webhook

from agents.webhooks.choices import DEFAULT_EVENT_TYPES, DeliveryStatus
from agents.webhooks.dispatch import dispatch_step
from agents.webhooks.models import WebhookDelivery, WebhookEndpoint
from agents.webhooks.views import WebhookDeliveryViewSet, WebhookEndpointViewSet
from projects.choices import WorkspaceRole
from tests import factories
from tests.api.conftest import codes, frozen_rate_window  # noqa: F401 - fixture
from tests.conftest import client_for

from .conftest import emit_events

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_nudge")]


def base(workspace) -> str:
    return f"/api/v1/workspaces/{workspace.pk}/webhook-endpoints"


def create(client, workspace, **body):
    return client.post(base(workspace), {"url": "http://127.0.0.1:9/hook", **body}, format="json")


def test_create_shows_the_secret_once(admin_client, workspace):
    response = create(admin_client, workspace, description="ops")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"].startswith("whsec_") and Webhook(body["secret"])  # the format the package reads
    assert body["event_types"] == list(DEFAULT_EVENT_TYPES) and "run.step" not in body["event_types"]
    assert body["is_active"] is True and body["workspace_id"] == str(workspace.pk)
    endpoint_url = f"{base(workspace)}/{body['id']}"
    assert "secret" not in admin_client.get(endpoint_url).json()
    assert all("secret" not in row for row in admin_client.get(base(workspace)).json()["data"])


def test_list_retrieve_update_delete(admin_client, workspace):
    endpoint_id = create(admin_client, workspace).json()["id"]
    listed = admin_client.get(base(workspace)).json()
    assert [row["id"] for row in listed["data"]] == [endpoint_id] and listed["pagination"]["total"] == 1
    patched = admin_client.patch(f"{base(workspace)}/{endpoint_id}",
                                 {"event_types": ["run.failed", "run.step"], "is_active": False}, format="json")
    assert patched.status_code == 200, patched.content
    assert patched.json()["event_types"] == ["run.step", "run.failed"] and patched.json()["is_active"] is False
    assert admin_client.get(f"{base(workspace)}?is_active=false").json()["pagination"]["total"] == 1
    assert admin_client.delete(f"{base(workspace)}/{endpoint_id}").status_code == 204
    assert not WebhookEndpoint.objects.exists()


def test_enabling_clears_the_disabled_state(admin_client, workspace):
    endpoint_id = create(admin_client, workspace).json()["id"]
    WebhookEndpoint.objects.filter(pk=endpoint_id).update(is_active=False, consecutive_failures=5,
                                                          disabled_reason="5 deliveries in a row failed")
    body = admin_client.patch(f"{base(workspace)}/{endpoint_id}", {"is_active": True}, format="json").json()
    assert body["is_active"] and body["consecutive_failures"] == 0 and body["disabled_reason"] == ""


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"url": "not a url"}, "url", "invalid"),
        ({"url": "ftp://example.com/x"}, "url", "invalid"),
        ({"event_types": ["llm.delta"]}, "event_types", "unknown_event_type"),
        ({"event_types": ["nope"]}, "event_types", "unknown_event_type"),
        ({"event_types": []}, "event_types", "empty"),
        ({"event_types": "run.failed"}, "event_types", "not_a_list"),
        ({"url": "http://127.0.0.1\x00/"}, "url", None),
    ],
)
def test_bad_input_is_400(admin_client, workspace, body, field, code):
    response = create(admin_client, workspace, **body)
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert any(e["field"] == field for e in errors), errors
    if code:
        assert code in codes(response) or any(code in e["code"] for e in errors), errors
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/hook", "http://169.254.169.254/latest/meta-data/",
                                 "http://10.0.0.1/", "http://localhost/hook"])
def test_private_targets_are_400_at_create_and_update(admin_client, workspace, settings, url):
    endpoint_id = create(admin_client, workspace).json()["id"]
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    response = create(admin_client, workspace, url=url)
    assert response.status_code == 400 and codes(response) == ["private_target"]
    response = admin_client.patch(f"{base(workspace)}/{endpoint_id}", {"url": url}, format="json")
    assert response.status_code == 400 and codes(response) == ["private_target"]


def test_rotate_secret_gives_a_new_one_once(admin_client, workspace):
    first = create(admin_client, workspace).json()
    url = f"{base(workspace)}/{first['id']}/rotate-secret"
    rotated = admin_client.post(url, HTTP_IDEMPOTENCY_KEY="rot-1")
    assert rotated.status_code == 200 and rotated.json()["secret"] != first["secret"]
    again = admin_client.post(url, HTTP_IDEMPOTENCY_KEY="rot-1")
    assert again.json()["secret"] == rotated.json()["secret"]  # the same request, not a second rotation
    assert WebhookEndpoint.objects.get(pk=first["id"]).secret == rotated.json()["secret"]


def test_create_with_an_idempotency_key_creates_once(admin_client, workspace):
    one = admin_client.post(base(workspace), {"url": "http://127.0.0.1:9/a"}, format="json",
                            HTTP_IDEMPOTENCY_KEY="k1")
    two = admin_client.post(base(workspace), {"url": "http://127.0.0.1:9/a"}, format="json",
                            HTTP_IDEMPOTENCY_KEY="k1")
    assert one.status_code == two.status_code == 201 and one.json() == two.json()
    assert WebhookEndpoint.objects.count() == 1


def test_deliveries_list_filter_and_redeliver(admin_client, workspace, project, receiver):
    body = admin_client.post(base(workspace), {"url": receiver.url}, format="json").json()
    receiver.secret = body["secret"]
    receiver.answers.append(500)
    emit_events(project, 2)
    dispatch_step(body["id"])  # 500: retried later
    deliveries = f"{base(workspace)}/{body['id']}/deliveries"
    assert [row["status"] for row in admin_client.get(deliveries).json()["data"]] == ["pending"]
    while len(receiver.succeeded()) < 2:
        dispatch_step(body["id"])
        time.sleep(0.02)
    listed = admin_client.get(deliveries).json()["data"]
    assert [row["status"] for row in listed] == ["succeeded", "succeeded"]  # newest first
    assert listed[1]["attempts"] == 2 and listed[0]["attempts"] == 1
    succeeded = admin_client.get(f"{deliveries}?status=succeeded").json()["data"]
    assert succeeded and all(row["status"] == "succeeded" for row in succeeded)
    assert succeeded[-1]["attempts"] >= 1 and succeeded[-1]["response_status_code"] == 204
    assert admin_client.get(f"{deliveries}?status=bogus").status_code == 400
    one = succeeded[-1]["id"]
    assert admin_client.get(f"{deliveries}/{one}").json()["event_type"] == "run.succeeded"
    redelivered = admin_client.post(f"{deliveries}/{one}/redeliver", HTTP_IDEMPOTENCY_KEY="r1")
    assert redelivered.status_code == 202, redelivered.content
    assert redelivered.json()["is_redelivery"] and redelivered.json()["status"] == "pending"
    replay = admin_client.post(f"{deliveries}/{one}/redeliver", HTTP_IDEMPOTENCY_KEY="r1")
    assert replay.status_code == 202 and replay.json()["id"] == redelivered.json()["id"]
    conflict = admin_client.post(f"{deliveries}/{one}/redeliver")
    assert conflict.status_code == 409 and codes(conflict) == ["delivery_pending"]
    assert WebhookDelivery.objects.filter(is_redelivery=True, status=DeliveryStatus.PENDING).count() == 1


def test_unauthenticated_is_401(api_client, workspace):
    assert api_client.get(base(workspace)).status_code == 401
    assert api_client.post(base(workspace), {"url": "http://127.0.0.1/"}, format="json").status_code == 401


@pytest.mark.parametrize("role", [WorkspaceRole.OPERATOR, WorkspaceRole.VIEWER])
def test_members_who_are_not_admins_are_403(workspace, admin_client, role):
    endpoint_id = create(admin_client, workspace).json()["id"]
    client = client_for(factories.MembershipFactory(workspace=workspace, role=role).user)
    for response in (
        client.get(base(workspace)),
        create(client, workspace),
        client.get(f"{base(workspace)}/{endpoint_id}"),
        client.patch(f"{base(workspace)}/{endpoint_id}", {"is_active": False}, format="json"),
        client.delete(f"{base(workspace)}/{endpoint_id}"),
        client.post(f"{base(workspace)}/{endpoint_id}/rotate-secret"),
        client.get(f"{base(workspace)}/{endpoint_id}/deliveries"),
    ):
        assert response.status_code == 403, response.content
        assert codes(response) == ["permission_denied"]
    assert WebhookEndpoint.objects.get(pk=endpoint_id).is_active


def test_a_project_owner_without_a_role_is_403_and_a_superuser_may(workspace, project, owner_client, superuser):
    assert owner_client.get(base(workspace)).status_code == 403
    assert create(client_for(superuser), workspace).status_code == 201


def test_another_workspace_and_unknown_ids_are_404(admin_client, workspace, stranger_client):
    endpoint_id = create(admin_client, workspace).json()["id"]
    assert stranger_client.get(base(workspace)).status_code == 404
    assert stranger_client.get(f"{base(workspace)}/{endpoint_id}").status_code == 404
    assert stranger_client.post(f"{base(workspace)}/{endpoint_id}/rotate-secret").status_code == 404
    other = factories.MembershipFactory(role=WorkspaceRole.ADMIN)  # an admin of another workspace
    other_client = client_for(other.user)
    assert other_client.get(f"{base(workspace)}/{endpoint_id}").status_code == 404
    # The endpoint under the other admin's own workspace: not there either.
    assert other_client.get(f"{base(other.workspace)}/{endpoint_id}").status_code == 404
    assert other_client.get(f"{base(other.workspace)}/{endpoint_id}/deliveries").status_code == 404
    assert admin_client.get(f"{base(workspace)}/{uuid.uuid4()}").status_code == 404
    assert admin_client.post(f"{base(workspace)}/{endpoint_id}/deliveries/999999/redeliver").status_code == 404


@pytest.mark.usefixtures("frozen_rate_window")
@pytest.mark.parametrize(
    ("viewset", "action", "send"),
    [
        (WebhookEndpointViewSet, "create", lambda c, ws, eid: create(c, ws)),
        (WebhookEndpointViewSet, "list", lambda c, ws, eid: c.get(base(ws))),
        (WebhookEndpointViewSet, "partial_update",
         lambda c, ws, eid: c.patch(f"{base(ws)}/{eid}", {"description": "x"}, format="json")),
        (WebhookEndpointViewSet, "rotate_secret", lambda c, ws, eid: c.post(f"{base(ws)}/{eid}/rotate-secret")),
        (WebhookDeliveryViewSet, "list", lambda c, ws, eid: c.get(f"{base(ws)}/{eid}/deliveries")),
    ],
)
def test_over_the_limit_is_429(admin_client, workspace, monkeypatch, viewset, action, send):
    endpoint_id = create(admin_client, workspace).json()["id"]
    monkeypatch.setattr(viewset, "rate_limits", {**viewset.rate_limits, action: "1/m"})
    assert send(admin_client, workspace, endpoint_id).status_code in (200, 201)
    refused = send(admin_client, workspace, endpoint_id)
    assert refused.status_code == 429 and codes(refused) == ["rate_limited"] and int(refused["Retry-After"]) >= 1
