"""The event streams through Django's test client (the WSGI path, as under ``runserver``): what they send, who may
read them, their errors, their rate limits and their OpenAPI description. The ASGI server is tested in
``tests/runtime/test_event_streams.py``."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from agents.events.views import ProjectEventsView
from agents.runtime import services as runtime
from agents.runtime.views import AgentRunViewSet
from projects.choices import WorkspaceRole
from tests import factories
from tests.conftest import client_for

from .conftest import codes
from .test_runs import loop_agent as loop_agent_fixture
from .test_runs import queued, runs_url

loop_agent = loop_agent_fixture

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    """Queued runs stay queued (their tasks are not sent: eager mode would run them here)."""
    monkeypatch.setattr(runtime, "_send", lambda *args: None)


def frames(response, count: int | None = None) -> list[dict]:
    """The SSE frames of a streaming response (``count``: stop after that many), comments as ``{"comment": …}``."""
    found, buffer = [], b""
    for chunk in response.streaming_content:
        buffer += chunk
        while b"\n\n" in buffer:
            raw, buffer = buffer.split(b"\n\n", 1)
            frame = {}
            for line in raw.decode().splitlines():
                name, _, value = line.partition(": ")
                frame[name or "comment"] = json.loads(value) if name == "data" else value
            found.append(frame)
            if count is not None and len(found) >= count:
                response.close()
                return found
    return found


def test_a_cancelled_runs_stream_replays_its_events_and_ends(owner_client, loop_agent):
    run = queued(loop_agent)
    runtime.run_cancel(run)
    response = owner_client.get(runs_url(loop_agent, run, "events"), HTTP_ACCEPT="text/event-stream",
                                HTTP_LAST_EVENT_ID="0")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/event-stream")
    sent = frames(response)
    assert [frame["event"] for frame in sent] == ["run.queued", "run.cancelled"]
    assert [frame["id"] for frame in sent] == [frame["data"]["id"] for frame in sent]
    assert sent[1]["data"]["data"]["error_code"] == "cancelled"


def test_without_last_event_id_a_runs_stream_starts_with_its_state(owner_client, loop_agent):
    run = queued(loop_agent)
    runtime.run_cancel(run)
    sent = frames(owner_client.get(runs_url(loop_agent, run, "events")))
    assert [(frame["event"], frame["data"]["status"]) for frame in sent] == [("run.state", "cancelled")]
    assert "id" not in sent[0]


def test_a_viewer_reads_the_projects_stream_which_keeps_alive(project, workspace, loop_agent):
    viewer = factories.MembershipFactory(workspace=workspace, role=WorkspaceRole.VIEWER).user
    client = client_for(viewer)
    with override_settings(EVENTS_KEEPALIVE_SECONDS=0.1):
        response = client.get(f"/api/v1/projects/{project.pk}/events", HTTP_ACCEPT="text/event-stream")
        assert response.status_code == 200
        assert frames(response, 1) == [{"comment": "keep-alive"}]
    run = queued(loop_agent)
    response = client.get(f"/api/v1/projects/{project.pk}/events?last_event_id=0&types=run.queued")
    sent = frames(response, 1)
    assert sent[0]["event"] == "run.queued" and sent[0]["data"]["data"]["run_id"] == str(run.pk)


def test_streams_need_authentication_and_hide_other_workspaces(api_client, stranger_client, project, loop_agent):
    run = queued(loop_agent)
    for url in (runs_url(loop_agent, run, "events"), f"/api/v1/projects/{project.pk}/events"):
        assert api_client.get(url, HTTP_ACCEPT="text/event-stream").status_code == 401
        response = stranger_client.get(url, HTTP_ACCEPT="text/event-stream")
        assert response.status_code == 404 and codes(response) == ["not_found"]


@pytest.mark.parametrize("value", ["yesterday", "-1", str(2**63)])
def test_a_bad_last_event_id_is_400(owner_client, project, value):
    response = owner_client.get(f"/api/v1/projects/{project.pk}/events", HTTP_LAST_EVENT_ID=value)
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "last_event_id"
    response = owner_client.get(f"/api/v1/projects/{project.pk}/events?types=run.exploded")
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "types"


@pytest.mark.usefixtures("frozen_rate_window")
def test_streams_are_rate_limited(owner_client, project, loop_agent, monkeypatch):
    monkeypatch.setattr(AgentRunViewSet, "rate_limits", {**AgentRunViewSet.rate_limits, "events": "1/m"})
    monkeypatch.setattr(ProjectEventsView, "rate_limits", {"get": "1/m"})
    run = queued(loop_agent)
    runtime.run_cancel(run)
    url = runs_url(loop_agent, run, "events")
    frames(owner_client.get(url))
    response = owner_client.get(url)
    assert response.status_code == 429 and codes(response) == ["rate_limited"] and response["Retry-After"]
    with override_settings(EVENTS_KEEPALIVE_SECONDS=0.05):
        frames(owner_client.get(f"/api/v1/projects/{project.pk}/events"), 1)
    response = owner_client.get(f"/api/v1/projects/{project.pk}/events")
    assert response.status_code == 429


def test_the_streams_are_in_the_openapi_schema(api_client):
    schema = api_client.get("/api/schema/?format=json").json()
    run_events = schema["paths"]["/api/v1/projects/{project_id}/agents/{agent_id}/runs/{run_id}/events"]["get"]
    project_events = schema["paths"]["/api/v1/projects/{project_id}/events"]["get"]
    for operation in (run_events, project_events):
        assert "text/event-stream" in operation["responses"]["200"]["content"]
        assert {p["name"] for p in operation["parameters"]} >= {"Last-Event-ID", "last_event_id"}
        assert {"401", "404", "429"} <= set(operation["responses"])
