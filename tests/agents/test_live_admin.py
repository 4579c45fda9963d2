"""The live admin's fragments: each part of a run's page and of the index's "Runs" section renders alone at its own
URL (staff session, the pages' permissions, 404 for what the user cannot see), and the pages say which events
refresh which part. The browser side (htmx swapping them in as events arrive) is ``test_live_admin_browser.py``."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from agents.choices import AgentStatus as S
from agents.choices import RunRequestKind, RunRequestStatus, RunStatus
from agents.models import AgentInstance, AgentRun, AgentRunRequest, AgentRunStep
from agents.runtime.admin import INDEX_FRAGMENTS, RUN_FRAGMENTS
from tests.factories import AgentTypeFactory, MembershipFactory, ProjectFactory, UserFactory, agent_in_status

pytestmark = pytest.mark.django_db

SCHEMA = {"type": "object", "required": ["branch"], "properties": {"branch": {"type": "string"}}}


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def staff(*codenames: str, workspace=None, role: str = "operator"):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="agents", codename__in=codenames))
    if workspace is not None:
        MembershipFactory(workspace=workspace, user=user, role=role)
    return user


def waiting_run(project, *kinds: str) -> tuple[AgentRun, list[AgentRunRequest]]:
    """A ``waiting`` run of a new agent of ``project`` with one pending request of each of ``kinds`` (oldest first)."""
    agent = agent_in_status(S.WAITING, project=project, agent_type=AgentTypeFactory(handler="builder"))
    run = AgentRun.objects.create(agent=agent, instruction="Release 2.0", status=RunStatus.WAITING)
    requests = []
    for n, kind in enumerate(kinds):
        requests.append(AgentRunRequest.objects.create(
            run=run, kind=kind, tool_name="write_context" if kind == RunRequestKind.APPROVAL else "request_input",
            arguments={"n": n}, message=f"Question {n}", requested_schema=SCHEMA,
            requested_at=timezone.now() + timedelta(seconds=n),
        ))
    return run, requests


def fragment_url(run, name: str) -> str:
    return reverse("admin:agents_agentrun_fragment", args=[run.pk, name])


def index_url(name: str) -> str:
    return reverse("admin:agents_agentrun_index_fragment", args=[name])


# --- A run's page. ---


def test_each_fragment_of_a_run_renders_alone_with_what_the_page_shows(admin_client, project):
    run, (approval,) = waiting_run(project, RunRequestKind.APPROVAL)
    AgentRunStep.objects.create(run=run, index=0, kind="tool_call", name="read_context", duration_ms=12)
    page = admin_client.get(reverse("admin:agents_agentrun_change", args=[run.pk])).content.decode()
    expected = {
        "summary": ['id="run-summary"', "Waiting for a person", "Cancel run…"],
        "pending": ['id="run-pending"', f'id="run-request-{approval.pk}" hx-preserve="true"', 'value="approve"'],
        "requests": [],  # nothing answered yet: the fragment is empty, its place on the page stays
        "timeline": ['id="run-timeline"', "#0</a> Tool call read_context"],
        "trace": ['id="run-trace"', 'id="step-0"', "read_context"],
    }
    for name, needles in expected.items():
        response = admin_client.get(fragment_url(run, name))
        html = response.content.decode()
        assert response.status_code == 200 and "no-store" in response["Cache-Control"], name
        assert "<html" not in html and 'id="header"' not in html, name  # the fragment alone, not a page
        for needle in needles:
            assert needle in html and needle in page, (name, needle)


def test_a_fragment_reads_only_what_it_shows(admin_client, project):
    run, _ = waiting_run(project, RunRequestKind.APPROVAL)
    AgentRunStep.objects.create(run=run, index=0, kind="tool_call", name="read_context")
    tables = {}
    for name in RUN_FRAGMENTS:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(fragment_url(run, name)).status_code == 200
        tables[name] = " ".join(q["sql"] for q in queries.captured_queries)
    steps = f'FROM "{AgentRunStep._meta.db_table}"'
    assert steps not in tables["summary"] and steps not in tables["pending"] and steps not in tables["requests"]
    assert steps in tables["trace"] and steps in tables["timeline"]


def test_a_pending_block_keeps_its_key_until_what_it_shows_changes(admin_client, project, superuser):
    run, (first, second) = waiting_run(project, RunRequestKind.INPUT, RunRequestKind.INPUT)
    html = admin_client.get(fragment_url(run, "pending")).content.decode()
    assert f'id="run-request-{first.pk}-answer"' in html and f'id="run-request-{second.pk}-later"' in html
    assert "Answer the request above first." in html
    # Once the first is answered, the second is the one to answer: a new key, so the page renders its form.
    AgentRunRequest.objects.filter(pk=first.pk).update(status=RunRequestStatus.ANSWERED, decided_at=timezone.now(),
                                                         decided_by=superuser)
    html = admin_client.get(fragment_url(run, "pending")).content.decode()
    assert f"run-request-{first.pk}" not in html and f'id="run-request-{second.pk}-answer"' in html
    assert 'name="content-branch"' in html and "Answer the request above first." not in html


def test_the_run_page_says_which_events_refresh_which_part(admin_client, project):
    run, _ = waiting_run(project, RunRequestKind.APPROVAL)
    html = admin_client.get(reverse("admin:agents_agentrun_change", args=[run.pk])).content.decode()
    stream = reverse("admin:agents_agentrun_events") + f"?run={run.pk}"
    assert f'hx-ext="sse" sse-connect="{stream}"' in html
    found = re.findall(r'id="live-(\w+)" hx-get="([^"]+)" hx-trigger="([^"]+)"', html)
    parts = {name: (url, trigger) for name, url, trigger in found}
    assert set(parts) == set(RUN_FRAGMENTS)
    for name, (url, trigger) in parts.items():
        assert url == fragment_url(run, name)
        assert "sse:run.succeeded delay:100ms" in trigger and "llm.delta" not in trigger
    assert "sse:run.step" in parts["trace"][1] and "sse:request.decided" in parts["pending"][1]
    assert "sse:run.step" not in parts["pending"][1]  # a step changes no request
    for script in ("agents/vendor/htmx.min.js", "agents/vendor/htmx-ext-sse.js", "agents/live.js"):
        assert script in html
    assert 'id="run-llm-live" hidden' in html  # shown by the script only while an LLM call streams


def test_fragments_follow_the_pages_permissions_and_tenancy(client, project):
    run, _ = waiting_run(project, RunRequestKind.APPROVAL)
    workspace = project.workspace
    url = fragment_url(run, "summary")
    # Another workspace's member sees no such run (404, not 403: ids cannot be probed).
    outsider = staff("view_agentrun", "change_agentrun", workspace=ProjectFactory().workspace)
    client.force_login(outsider)
    assert client.get(url).status_code == 404
    assert client.get(fragment_url(AgentRun(pk="00000000-0000-4000-8000-000000000000"), "summary")).status_code == 404
    # A member without the view permission: 403, as on the page.
    client.force_login(staff("view_agentinstance", workspace=workspace))
    assert client.get(url).status_code == 403
    # A viewer sees the fragment, without the buttons.
    client.force_login(staff("view_agentrun", workspace=workspace, role="viewer"))
    html = client.get(fragment_url(run, "pending")).content.decode()
    assert "Waiting for you" in html and 'value="approve"' not in html
    assert "Cancel run" not in client.get(url).content.decode()
    # Unknown fragment, other methods.
    assert client.get(fragment_url(run, "secrets")).status_code == 404
    assert client.post(url).status_code == 405
    # Not staff: the login page, as everywhere in the admin.
    client.force_login(UserFactory(is_staff=False))
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    client.logout()
    assert client.get(url).status_code == 302


# --- The index. ---


def test_each_part_of_the_index_renders_alone_over_the_users_workspaces(client, project):
    mine, _ = waiting_run(project, RunRequestKind.APPROVAL)
    theirs, _ = waiting_run(ProjectFactory(), RunRequestKind.INPUT)
    stale = agent_in_status(S.WORKING, project=project, name="Stuck")
    AgentInstance.objects.filter(pk=stale.pk).update(last_heartbeat_at=timezone.now() - timedelta(hours=1))
    AgentRun.objects.create(agent=stale, status=RunStatus.RUNNING)
    client.force_login(staff("view_agentrun", workspace=project.workspace, role="viewer"))
    counts = client.get(index_url("counts")).content.decode()
    assert re.search(r'run-count-waiting"><a [^>]+><span class="run-count-number">1</span>', counts)
    assert re.search(r'run-count-running"><a [^>]+><span class="run-count-number">1</span>', counts)
    waiting = client.get(index_url("waiting")).content.decode()
    assert str(mine.pk) in waiting and str(theirs.pk) not in waiting and ">View</a>" in waiting
    stale_html = client.get(index_url("stale")).content.decode()
    assert "Stuck" in stale_html and 'id="stale-heartbeats"' in stale_html
    index = client.get(reverse("admin:index")).content.decode()
    for name in INDEX_FRAGMENTS:
        assert f'hx-get="{index_url(name)}"' in index
    assert f'sse-connect="{reverse("admin:agents_agentrun_events")}"' in index
    assert re.search(r'id="live-stale" [^>]*hx-trigger="[^"]*every 5s"', index)
    assert "agents/vendor/htmx.min.js" in index and "agents/live.js" in index


def test_index_parts_need_the_view_permission(client):
    client.force_login(staff("view_agentinstance"))
    for name in INDEX_FRAGMENTS:
        assert client.get(index_url(name)).status_code == 403
    index = client.get(reverse("admin:index")).content.decode()
    assert "agents/live.js" not in index  # no live section, no script
    client.force_login(staff("view_agentrun"))
    assert client.get(index_url("nothing")).status_code == 404
    assert client.post(index_url("counts")).status_code == 405


# --- The runs list. ---


def test_the_runs_list_refreshes_its_own_rows_from_its_own_url(admin_client, project):
    waiting_run(project, RunRequestKind.APPROVAL)
    url = reverse("admin:agents_agentrun_changelist") + "?status__exact=waiting"
    html = admin_client.get(url).content.decode()
    live = re.search(r'id="live-run-results" hx-get="([^"]+)" hx-trigger="([^"]+)" hx-select="([^"]+)"', html)
    assert live and live.group(1).replace("&amp;", "&") == url
    assert live.group(3) == "#live-run-results > *" and "sse:run.step" in live.group(2)
    assert 'id="result_list"' in html and html.count('class="paginator"') == 1
    # What it fetches is the list itself: the selected part holds the rows and the count.
    fetched = admin_client.get(live.group(1).replace("&amp;", "&"), HTTP_HX_REQUEST="true").content.decode()
    section = fetched.split('id="live-run-results"', 1)[1]
    assert 'id="result_list"' in section and "1 agent run" in section


# --- The admin's event stream (transactional tests: an event is delivered once its transaction has ended). ---

streams = pytest.mark.django_db(transaction=True)


def events_url(run=None) -> str:
    return reverse("admin:agents_agentrun_events") + (f"?run={run.pk}" if run is not None else "")


def read_frames(response, *, until_idle: bool = True) -> list[tuple[str, dict]]:
    """``(type, event)`` of each event frame of a streaming response, up to its first keep-alive comment (the stream
    is idle: it has caught up) or its end."""
    assert response.status_code == 200 and response["Content-Type"].startswith("text/event-stream")
    frames = []
    try:
        chunks = iter(response.streaming_content)
        assert next(chunks) == b"retry: 1000\n\n"  # at once: the browser knows the stream is open
        for chunk in chunks:
            text = chunk.decode()
            if text.startswith(":"):
                break
            fields = dict(line.split(": ", 1) for line in text.strip().splitlines())
            frames.append((fields["event"], json.loads(fields["data"])))
    finally:
        response.close()
    return frames


def new_run(project) -> AgentRun:
    from agents.runtime import services as runtime

    agent = agent_in_status(S.IDLE, project=project, agent_type=AgentTypeFactory(handler="builder"))
    run, _ = runtime.run_create(agent=agent, instruction="Build")
    return run


@pytest.fixture
def quick_keepalive(settings):
    settings.EVENTS_KEEPALIVE_SECONDS = 0.3


@streams
def test_a_runs_stream_replays_its_events_and_ends_with_the_run(admin_client, project, superuser):
    run, other = new_run(project), new_run(project)  # each executes (Celery runs tasks eagerly in the suite)
    frames = read_frames(admin_client.get(events_url(run), HTTP_LAST_EVENT_ID="0"))
    types = [t for t, _ in frames]
    assert types[0] == "run.queued" and types[-1] == f"run.{AgentRun.objects.get(pk=run.pk).status}"
    assert "run.step" in types and {e["data"]["run_id"] for _, e in frames} == {str(run.pk)}
    ids = [int(e["id"]) for _, e in frames]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # Resuming after the first event: the rest, and nothing twice.
    rest = read_frames(admin_client.get(events_url(run), HTTP_LAST_EVENT_ID=str(ids[0])))
    assert [int(e["id"]) for _, e in rest] == ids[1:]
    assert str(other.pk) not in json.dumps(frames)


@streams
def test_the_admins_stream_carries_only_the_users_workspaces(client, quick_keepalive):
    first, second, foreign = ProjectFactory(), ProjectFactory(), ProjectFactory()
    runs = {name: new_run(project) for name, project in
            (("first", first), ("second", second), ("foreign", foreign))}
    member_of_two = staff("view_agentrun", workspace=first.workspace)
    MembershipFactory(workspace=second.workspace, user=member_of_two, role="viewer")
    member_of_one = staff("view_agentrun", workspace=first.workspace)
    for user, expected in ((member_of_two, {"first", "second"}), (member_of_one, {"first"})):
        client.force_login(user)
        frames = read_frames(client.get(events_url(), HTTP_LAST_EVENT_ID="0"))
        seen = {e["data"]["run_id"] for t, e in frames if t == "run.queued"}
        assert seen == {str(runs[name].pk) for name in expected}, user
    # Someone else's run has no stream for them: 404, as its page.
    assert client.get(events_url(runs["foreign"])).status_code == 404


@streams
def test_the_admins_stream_refuses_what_it_must(client, project, quick_keepalive):
    run = new_run(project)
    client.force_login(staff("view_agentinstance", workspace=project.workspace))
    assert client.get(events_url()).status_code == 403 and client.get(events_url(run)).status_code == 403
    client.force_login(staff("view_agentrun"))  # staff of no workspace: nothing to follow, and no reconnecting
    assert client.get(events_url()).status_code == 204
    assert client.get(events_url(run)).status_code == 404
    client.force_login(staff("view_agentrun", workspace=project.workspace))
    assert client.get(events_url(), HTTP_LAST_EVENT_ID="abc").status_code == 400
    assert client.get(events_url(), HTTP_LAST_EVENT_ID="-1").status_code == 400
    assert client.get(events_url(), HTTP_LAST_EVENT_ID=str(2**63)).status_code == 400
    assert client.get(reverse("admin:agents_agentrun_events") + "?run=not-a-uuid").status_code == 404
    assert client.post(events_url()).status_code == 405
    client.logout()
    response = client.get(events_url())
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
