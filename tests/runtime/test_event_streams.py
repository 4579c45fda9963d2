"""Event streams (SSE) against a real ASGI server (``gunicorn syndarix.asgi:application`` with uvicorn workers, the
Procfile's ``web``), real Redis pub/sub, PostgreSQL and Celery workers: a run's stream follows the run while it
executes, a reconnect with ``Last-Event-ID`` gets the rest with no gap and no duplicate, and the API's rules hold
(401, 404 for another workspace's ids, viewers read, 429)."""

from __future__ import annotations

import pytest
from django.conf import settings

from agents.choices import RunStatus
from agents.events import events_after
from agents.runtime import services as runtime
from projects.choices import WorkspaceRole
from tests.events.sse import Stream
from tests.factories import MembershipFactory, ProjectFactory, token_for
from tests.live import Gunicorn

from .harness import BadStream, Hold, database_url, reply, stream_reply
from .support import calls_agent, fresh, price_model, run_in

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def web(django_db_setup, tmp_path_factory):
    """The ASGI web server (two uvicorn workers under gunicorn) on the test database and Redis."""
    server = Gunicorn(
        {"DATABASE_URL": database_url(settings.DATABASES["default"]), "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
         "REDIS_URL": settings.REDIS_URL, "EVENTS_KEEPALIVE_SECONDS": "1",
         "AGENT_REGISTRY_MODULES": "tests.runtime.agent_classes"},
        workers=2, log_dir=tmp_path_factory.mktemp("asgi"), asgi=True,
    ).start()
    yield server
    server.stop()


def _run_path(run) -> str:
    return f"/api/v1/projects/{run.agent.project_id}/agents/{run.agent_id}/runs/{run.pk}/events"


def test_a_runs_stream_follows_it_while_it_executes_and_ends_after_its_terminal_event(project, stub, web):
    token = token_for(project.owner)
    first, second = Hold(reply("one")), Hold(reply("two"))
    stub.script(first, second, reply("three"))
    agent = calls_agent(project, calls=3)
    run, _ = runtime.run_create(agent=agent, instruction="go")
    first.wait_arrived()  # the run is running, its first LLM call in flight

    with Stream(web.port, _run_path(run), token=token) as stream:
        assert stream.status == 200, stream.body()
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-cache"
        frames = stream.events()
        state = next(frames)
        assert state.event == "run.state" and state.id is None
        assert (state.data["run_id"], state.data["status"]) == (str(run.pk), "running")
        first.release()
        seen = []
        for frame in frames:
            seen.append(frame)
            if frame.event == "run.step":
                break
        # The first step arrived while the second LLM call is held: the run cannot have finished.
        second.wait_arrived()
        assert seen[-1].data["data"]["index"] == 0 and seen[-1].data["data"]["kind"] == "llm_call"
        assert run_in(run, RunStatus.RUNNING).status == RunStatus.RUNNING
        second.release()
        seen += list(frames)  # the stream ends by itself after run.succeeded

    types = [frame.event for frame in seen]
    assert types[-1] == "run.succeeded" and types.count("run.step") == 3  # three LLM calls
    stored = [str(event.id) for event in events_after(None, run_id=run.pk)]
    ids = [frame.id for frame in seen]
    assert ids == stored[stored.index(ids[0]):stored.index(ids[-1]) + 1], "every event of the run, in order, once"
    for frame in seen:
        assert frame.data["type"] == frame.event and frame.data["id"] == frame.id
        assert frame.data["project_id"] == str(project.pk) and frame.data["workspace_id"] == str(project.workspace_id)


def test_a_reconnect_with_last_event_id_gets_the_rest_without_gap_or_duplicate(project, stub, web):
    token = token_for(project.owner)
    held = Hold(reply("two"))
    stub.script(reply("one"), held, reply("three"))
    agent = calls_agent(project, calls=3)
    run, _ = runtime.run_create(agent=agent, instruction="go")

    with Stream(web.port, _run_path(run) + "?last_event_id=0", token=token) as stream:
        first = []
        for frame in stream.events():
            first.append(frame)
            if frame.event == "run.step":
                break
    held.wait_arrived()
    held.release()
    with Stream(web.port, _run_path(run), token=token, headers={"Last-Event-ID": first[-1].id}) as stream:
        rest = list(stream.events())

    ids = [frame.id for frame in first + rest]
    stored = [str(event.id) for event in events_after(None, run_id=run.pk)]
    assert ids == stored[:stored.index(ids[-1]) + 1]  # up to the run's end (its agent's return to idle follows)
    assert [f.event for f in first][:2] == ["run.queued", "run.started"] and rest[-1].event == "run.succeeded"
    assert None not in ids  # a resumed stream sends no run.state


def test_a_finished_runs_stream_sends_its_state_and_ends(project, stub, web):
    stub.script(reply("one"))
    run, _ = runtime.run_create(agent=calls_agent(project, calls=1), instruction="go")
    run_in(run, RunStatus.SUCCEEDED)
    with Stream(web.port, _run_path(run), token=token_for(project.owner)) as stream:
        frames = list(stream.events())
    assert [(f.event, f.data["status"]) for f in frames] == [("run.state", "succeeded")]


def test_the_projects_stream_carries_every_run_and_agent_event_and_keeps_alive(project, stub, web):
    viewer = MembershipFactory(workspace=project.workspace, role=WorkspaceRole.VIEWER).user
    stub.script(reply("one"))
    agent = calls_agent(project, calls=1)
    path = f"/api/v1/projects/{project.pk}/events"
    with Stream(web.port, path, token=token_for(viewer)) as stream:
        assert stream.status == 200, stream.body()
        frames = iter(stream)
        first = next(frames)  # nothing happened yet: a keep-alive comment (EVENTS_KEEPALIVE_SECONDS=1 here)
        assert first.comment == "keep-alive" and first.event is None
        run, _ = runtime.run_create(agent=agent, instruction="go")
        seen = []
        for frame in frames:
            if frame.event is not None:
                seen.append(frame)
            if frame.event == "run.succeeded":
                break
    assert [f.event for f in seen][:2] == ["run.queued", "run.started"]
    assert "agent.transitioned" in [f.event for f in seen]
    assert {f.data["data"].get("run_id") for f in seen} == {str(run.pk)}

    with Stream(web.port, f"{path}?types=run.succeeded&last_event_id=0", token=token_for(viewer)) as stream:
        frame = next(stream.events())
    assert frame.event == "run.succeeded" and frame.data["data"]["run_id"] == str(run.pk)


def test_streams_refuse_as_the_api_does(project, stub, web):
    stub.script(reply("one"))
    run, _ = runtime.run_create(agent=calls_agent(project, calls=1), instruction="go")
    run_in(run, RunStatus.SUCCEEDED)
    stranger = token_for(ProjectFactory().owner)
    owner = token_for(project.owner)
    project_path = f"/api/v1/projects/{project.pk}/events"

    for path in (_run_path(run), project_path):
        with Stream(web.port, path) as stream:
            assert stream.status == 401, stream.body()
            assert stream.body()["errors"][0]["code"] == "not_authenticated"
        with Stream(web.port, path, token=stranger) as stream:
            assert stream.status == 404, stream.body()
    other = ProjectFactory()
    with Stream(web.port, _run_path(run).replace(str(project.pk), str(other.pk)), token=token_for(other.owner)) as s:
        assert s.status == 404  # the run is not under that project
    with Stream(web.port, project_path, token=owner, headers={"Last-Event-ID": "yesterday"}) as stream:
        assert stream.status == 400
        assert stream.body()["errors"][0]["field"] == "last_event_id"
    with Stream(web.port, project_path + "?types=run.exploded", token=owner) as stream:
        assert stream.status == 400 and stream.body()["errors"][0]["field"] == "types"

    statuses = []
    for _ in range(121):  # 60 a minute per user, in fixed windows: 121 requests cannot all fit in two of them
        with Stream(web.port, _run_path(run), token=owner) as stream:
            statuses.append(stream.status)
            if stream.status == 429:
                assert stream.headers.get("retry-after") and stream.body()["errors"][0]["code"] == "rate_limited"
                break
            list(stream)
    assert statuses[-1] == 429 and set(statuses[:-1]) == {200} and len(statuses) >= 61


def test_an_llm_calls_text_reaches_the_runs_stream_as_it_streams_and_the_step_stays_exact(project, stub, web):
    held = Hold(stream_reply("The plan ", "has three ", "parts.", usage=(42, 7), pause=0.05))
    stub.script(held)
    price_model()
    run, _ = runtime.run_create(agent=calls_agent(project, calls=1), instruction="go")
    held.wait_arrived()
    with Stream(web.port, _run_path(run), token=token_for(project.owner)) as stream:
        frames = stream.events()
        assert next(frames).event == "run.state"
        held.release()
        seen = list(frames)

    deltas = [frame for frame in seen if frame.event == "llm.delta"]
    assert [frame.data["text"] for frame in deltas] == ["The plan ", "has three ", "parts."]
    assert {(frame.id, frame.data["index"], frame.data["run_id"]) for frame in deltas} == {(None, 0, str(run.pk))}
    step_frame = next(frame for frame in seen if frame.event == "run.step")
    assert seen.index(deltas[-1]) < seen.index(step_frame)  # the text came while the call was in flight
    assert step_frame.data["data"]["prompt_tokens"] == 42 and step_frame.data["data"]["completion_tokens"] == 7
    step = fresh(run).steps.get(index=0)
    assert step.output["message"]["content"] == "The plan has three parts."
    assert (step.prompt_tokens, step.completion_tokens, str(step.cost)) == (42, 7, "0.000175")
    asked = stub.requests[0].body
    assert asked["stream"] is True and asked["stream_options"] == {"include_usage": True}
    assert not events_after(None, types=["llm.delta"])  # never stored


def test_a_server_that_streams_badly_is_asked_again_without_streaming(project, stub):
    stub.script(BadStream(), reply("fine"))
    run, _ = runtime.run_create(agent=calls_agent(project, calls=1), instruction="go")
    assert run_in(run, RunStatus.SUCCEEDED).result["message"] == "fine"
    first, second = (request.body for request in stub.requests)
    assert first["stream"] is True and "stream" not in second and "stream_options" not in second


def test_run_agent_wait_prints_the_steps_from_the_runs_events(project, stub):
    from io import StringIO

    from django.core.management import call_command

    stub.script(reply("one"), reply("two"))
    agent = calls_agent(project, calls=2)
    out = StringIO()
    call_command("run_agent", str(agent.pk), instruction="go", wait=True, timeout=60, stdout=out)
    lines = out.getvalue().splitlines()
    steps = [line.strip() for line in lines if line.strip().startswith("step ")]
    assert [step.split()[:3] for step in steps] == [["step", "0", "llm_call"], ["step", "1", "llm_call"]]
    assert "succeeded: 2 steps" in out.getvalue()
