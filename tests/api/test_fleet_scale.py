"""Lists and hot paths at fleet scale: cursor paging (``?cursor=`` / ``next_cursor``), the list ``total`` from the
agent counters or a capped count, the trigram index behind ``q``, and pinned query counts of the writes that read
their agent once."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents import services
from agents.choices import AgentStatus as S
from projects.choices import WorkspaceRole
from syndarix.api import pagination
from tests import factories
from tests.conftest import client_for

from .conftest import agents_url

pytestmark = pytest.mark.django_db


def walk(client, url: str, limit: int, **params) -> list[str]:
    """Every id of the list, page after page through ``next_cursor``."""
    ids, cursor = [], None
    while True:
        response = client.get(url, {"limit": limit, **params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.content
        body = response.json()
        ids += [row["id"] for row in body["data"]]
        cursor = body["pagination"]["next_cursor"]
        if cursor is None:
            assert body["pagination"]["has_next"] is False
            return ids


def test_agent_list_cursor_walks_every_agent_once_in_page_order(owner_client, project, agent_type):
    agents = [factories.AgentFactory(project=project, agent_type=agent_type) for _ in range(7)]
    paged = [row["id"] for row in owner_client.get(agents_url(project), {"limit": 100}).json()["data"]]
    assert walk(owner_client, agents_url(project), 3) == paged == [str(a.pk) for a in reversed(agents)]
    body = owner_client.get(agents_url(project), {"limit": 3}).json()
    follow = owner_client.get(agents_url(project), {"limit": 3, "cursor": body["pagination"]["next_cursor"]}).json()
    assert follow["pagination"] == {
        "total": 7, "total_exact": True, "page": None, "page_size": 3, "total_pages": 3, "has_next": True,
        "has_prev": True, "next_cursor": follow["pagination"]["next_cursor"],
    }
    assert [row["id"] for row in follow["data"]] == paged[3:6]


def test_a_cursor_is_stable_under_inserts(owner_client, project, agent_type):
    for _ in range(5):
        factories.AgentFactory(project=project, agent_type=agent_type)
    first = owner_client.get(agents_url(project), {"limit": 2}).json()
    expected = [row["id"] for row in owner_client.get(agents_url(project), {"limit": 100}).json()["data"]][2:]
    for _ in range(3):  # newer agents come before the cursor's position: they shift pages, never a cursor
        factories.AgentFactory(project=project, agent_type=agent_type)
    rest = owner_client.get(agents_url(project), {"limit": 100, "cursor": first["pagination"]["next_cursor"]}).json()
    assert [row["id"] for row in rest["data"]] == expected
    assert rest["pagination"]["total"] == 8


def test_cursor_follows_the_requested_ordering_and_filters(owner_client, project, agent_type):
    for name in ("delta", "alpha", "charlie", "bravo", "echo"):
        factories.AgentFactory(project=project, agent_type=agent_type, name=name)
    paused = factories.agent_in_status(S.PAUSED, project=project, agent_type=agent_type, name="foxtrot")
    names = [row["name"] for row in owner_client.get(agents_url(project), {"ordering": "name"}).json()["data"]]
    walked = walk(owner_client, agents_url(project), 2, ordering="name")
    assert names == ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    assert len(walked) == 6
    assert walk(owner_client, agents_url(project), 1, status="paused") == [str(paused.pk)]


def test_bad_cursors_are_400_invalid_cursor(owner_client, project, agent_type):
    for _ in range(3):
        factories.AgentFactory(project=project, agent_type=agent_type)
    cursor = owner_client.get(agents_url(project), {"limit": 1}).json()["pagination"]["next_cursor"]
    for params in ({"cursor": "not-a-cursor"}, {"cursor": "e30"}, {"cursor": cursor, "ordering": "name"},
                   {"cursor": cursor, "ordering": "last_activity_at"}):
        response = owner_client.get(agents_url(project), params)
        assert response.status_code == 400, params
        assert response.json()["errors"][0]["code"] == "invalid_cursor"
        assert response.json()["errors"][0]["field"] == "cursor"


def test_an_ordering_with_a_nullable_field_has_no_cursor(owner_client, project, agent_type):
    for _ in range(3):
        factories.AgentFactory(project=project, agent_type=agent_type)
    body = owner_client.get(agents_url(project), {"limit": 1, "ordering": "last_activity_at"}).json()
    assert body["pagination"]["has_next"] is True
    assert body["pagination"]["next_cursor"] is None


def test_cursor_needs_auth_and_stays_in_the_callers_tenancy(owner_client, project, agent_type, api_client,
                                                             stranger_client):
    for _ in range(2):
        factories.AgentFactory(project=project, agent_type=agent_type)
    cursor = owner_client.get(agents_url(project), {"limit": 1}).json()["pagination"]["next_cursor"]
    assert api_client.get(agents_url(project), {"cursor": cursor}).status_code == 401
    assert stranger_client.get(agents_url(project), {"cursor": cursor}).status_code == 404


def test_transition_issue_and_run_lists_page_by_cursor(owner_client, project, agent, user):
    for n in range(3):
        services.agent_pause(agent, actor=user, reason=f"p{n}")
        services.agent_resume(agent, actor=user)
        factories.IssueFactory(project=project)
        agent.runs.create(instruction=f"run {n}")
    for url in (agents_url(project, agent, "transitions"), f"/api/v1/projects/{project.pk}/issues",
                agents_url(project, agent, "runs")):
        paged = [row["id"] for row in owner_client.get(url, {"limit": 100}).json()["data"]]
        assert len(paged) >= 3
        assert walk(owner_client, url, 2) == paged, url


def test_agent_list_total_comes_from_the_counters_and_others_are_capped(owner_client, project, agent_type,
                                                                        monkeypatch):
    for _ in range(4):
        factories.AgentFactory(project=project, agent_type=agent_type)
    factories.agent_in_status(S.PAUSED, project=project, agent_type=agent_type)
    services.agent_spawn(project=project, agent_type=agent_type, name="draft", is_playground=True)
    monkeypatch.setattr(pagination, "COUNT_LIMIT", 2)
    counted = {
        (): (5, True), (("status", "paused"),): (1, True), (("include_playground", "true"),): (6, True),
        (("q", "agent"),): (3, False),  # counted by the paginator, which stops one row past the limit
        (("q", "draft"), ("include_playground", "true")): (1, True),
    }
    for params, (total, exact) in counted.items():
        pagination_body = owner_client.get(agents_url(project), {"limit": 1, **dict(params)}).json()["pagination"]
        assert (pagination_body["total"], pagination_body["total_exact"]) == (total, exact), params
    # A page past the cap is still served: the count goes one row past the page asked for.
    body = owner_client.get(agents_url(project), {"q": "agent", "limit": 1, "page": 4}).json()
    assert len(body["data"]) == 1
    assert body["pagination"]["has_next"] is True
    assert (body["pagination"]["total"], body["pagination"]["total_exact"]) == (5, False)


def test_the_agent_list_reads_its_total_in_the_page_query(owner_client, project, agent_type):
    """One query for a page and its total; a page without rows reads the total alone (then 404 past the end)."""
    for _ in range(3):
        factories.AgentFactory(project=project, agent_type=agent_type)
    url = agents_url(project)
    owner_client.get(url)  # the token and the project access cached
    with CaptureQueriesContext(connection) as one:
        response = owner_client.get(url, {"limit": 2})
    first = response.json()
    assert (len(one.captured_queries), len(first["data"]), first["pagination"]["total"]) == (1, 2, 3)
    assert b'"total":3,' in response.content  # an integer, not 3.0 (PostgreSQL sums integers as numeric)
    cursor = owner_client.get(url, {"limit": 2, "cursor": first["pagination"]["next_cursor"]}).json()
    assert (len(cursor["data"]), cursor["pagination"]["total"], cursor["pagination"]["has_next"]) == (1, 3, False)
    with CaptureQueriesContext(connection) as empty:
        response = owner_client.get(url, {"status": "waiting"})
    none = response.json()
    assert (len(empty.captured_queries), none["data"], none["pagination"]["total"]) == (2, [], 0)
    assert b'"total":0,' in response.content
    assert owner_client.get(url, {"limit": 2, "page": 3}).status_code == 404


def test_the_agent_reads_select_only_what_the_representation_shows_of_the_type_and_revision(
        owner_client, project, agent_type):
    """The list's and the detail's one query selects the type's id, name and slug and the revision's id and version
    (the type's schema and capabilities, the revision's template are neither sent nor decoded for each row); the
    writes' locked read still loads them whole, as their services use them."""
    agent = factories.AgentFactory(project=project, agent_type=agent_type)
    revision = services.agent_type_commit_revision(agent_type, template={"instructions": "hi", "tools": []})
    spawned = services.agent_spawn(project=project, agent_type=agent_type, name="from-revision", config={})
    assert spawned.agent_type_revision == revision
    owner_client.get(agents_url(project))  # the token and the project access cached
    for url in (agents_url(project), agents_url(project, agent), agents_url(project, spawned)):
        with CaptureQueriesContext(connection) as captured:
            response = owner_client.get(url)
        assert response.status_code == 200, response.content
        (sql,) = [query["sql"] for query in captured.captured_queries]
        assert '"agents_agenttype"."slug"' in sql and '"agents_agenttyperevision"."version"' in sql
        for unshown in ('"agents_agenttype"."config_schema"', '"agents_agenttype"."capabilities"',
                        '"agents_agenttype"."description"', '"agents_agenttyperevision"."template"'):
            assert unshown not in sql
    row = response.json()
    assert (row["agent_type_name"], row["agent_type_slug"], row["agent_type_revision_version"]) == (
        agent_type.name, agent_type.slug, revision.version)
    with CaptureQueriesContext(connection) as locked:
        services.agent_lock(spawned.pk, project=project)
    assert '"agents_agenttype"."config_schema"' in locked.captured_queries[0]["sql"]


def test_the_agent_list_page_query_is_prepared_on_its_connection(owner_client, project, agent_type, settings):
    """Past ``DATABASE_PREPARE_THRESHOLD`` runs on a connection, the list's page query is a prepared statement of
    that connection: PostgreSQL no longer parses and plans it for each request (it costs more than running it)."""
    assert settings.DATABASES["default"]["OPTIONS"]["prepare_threshold"] == settings.DATABASE_PREPARE_THRESHOLD
    factories.AgentFactory(project=project, agent_type=agent_type)
    for _ in range(settings.DATABASE_PREPARE_THRESHOLD + 1):
        assert owner_client.get(agents_url(project)).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s",
                       ['%"assigned_issues_count"%"list_total_"%'])
        prepared = [row[0] for row in cursor.fetchall()]
    assert len(prepared) == 1 and "$1" in prepared[0]  # its parameters bound on the server


def test_the_agent_list_compiles_its_page_query_once_per_project_and_query_string(user, agent_type, monkeypatch):
    """The page query's SQL is compiled on the first request of a project and query string only; every request
    still reads its own project's current rows (``AgentViewSet.list_query_key``)."""
    from django.db.models.sql.compiler import SQLCompiler

    from syndarix import db

    compiled, as_sql = [], SQLCompiler.as_sql
    monkeypatch.setattr(SQLCompiler, "as_sql", lambda self, *a, **k: compiled.append(1) or as_sql(self, *a, **k))
    monkeypatch.setattr(db, "_compiled", type(db._compiled)())
    mine, theirs = factories.ProjectFactory(owner=user), factories.ProjectFactory(owner=user)
    ours = [factories.AgentFactory(project=mine, agent_type=agent_type, name=f"ours-{i}") for i in range(2)]
    other = factories.AgentFactory(project=theirs, agent_type=agent_type, name="theirs")
    client = client_for(user)

    def names(project, **params) -> list[str]:
        compiled.clear()
        response = client.get(agents_url(project), {"limit": 5, **params})
        assert response.status_code == 200, response.content
        return [row["name"] for row in response.json()["data"]]

    assert names(mine) == ["ours-1", "ours-0"] and compiled  # the first request compiles (token, project, page)
    assert (names(mine), compiled) == (["ours-1", "ours-0"], [])  # the same request compiles nothing
    assert names(theirs) == ["theirs"] and compiled  # another project: its own query (and its access, once)
    services.agent_pause(ours[0], actor=user)
    ours.append(factories.AgentFactory(project=mine, agent_type=agent_type, name="ours-2"))
    assert (names(mine), compiled) == (["ours-2", "ours-1", "ours-0"], [])  # current rows, same SQL
    assert (names(mine, status="paused"), len(compiled)) == (["ours-0"], 1)  # another query string
    # A search counts its total in a query of its own (capped), compiled each time; its page is compiled once.
    assert (names(mine, q="ours-2"), len(compiled)) == (["ours-2"], 2)
    assert (names(mine, q="ours-2"), len(compiled)) == (["ours-2"], 1)
    body = client.get(agents_url(mine), {"limit": 2}).json()
    assert [row["name"] for row in body["data"]] == ["ours-2", "ours-1"]
    assert body["pagination"]["total"] == 3
    assert other.name == "theirs"


def test_the_agent_detail_compiles_its_query_once_and_reads_the_urls_project_only(user, agent_type, compiles):
    """The detail's SQL is compiles on a process's first detail only (``agents.selectors.represented_agent``); each
    request still reads its own agent, current, with the URL's project and the caller's role in it, and an agent of
    another project stays a 404."""
    mine = factories.ProjectFactory(owner=user)
    theirs = factories.ProjectFactory()
    factories.MembershipFactory(workspace=theirs.workspace, user=user, role=WorkspaceRole.VIEWER)
    ours = factories.AgentFactory(project=mine, agent_type=agent_type, name="ours")
    other = factories.AgentFactory(project=theirs, agent_type=agent_type, name="theirs")
    client = client_for(user)

    def detail(project, agent):
        compiles.clear()
        return client.get(f"{agents_url(project)}/{agent.pk}")

    assert detail(mine, ours).json()["name"] == "ours" and compiles  # the first: token, project, agent
    assert detail(mine, ours).json()["status"] == "idle" and compiles == []  # again: nothing compiles
    services.agent_pause(ours, actor=user)
    body = detail(mine, ours).json()
    assert (body["status"], body["project_slug"], compiles) == ("paused", mine.slug, [])  # current row, same SQL
    assert detail(theirs, ours).status_code == 404  # an agent of another project, from a project the caller sees
    assert detail(mine, other).status_code == 404
    body = detail(theirs, other).json()
    assert (body["name"], body["project_slug"]) == ("theirs", theirs.slug)
    response = client.post(f"{agents_url(theirs)}/{other.pk}/pause")
    assert response.status_code == 403  # a viewer there: the role is the URL's project's own


@pytest.mark.django_db(transaction=True)
def test_over_asgi_each_request_runs_the_sql_an_earlier_requests_thread_compiled(user, agent_type, monkeypatch,
                                                                                 compiles):
    """Under ASGI (the Procfile's web line: ``syndarix.asgi.application``) Django runs each request's code on a thread
    of its own: the list's and the detail's SQL, compiles by the first request, is run again by the next ones (kept
    per process, not per thread)."""
    from asgiref.testing import ApplicationCommunicator
    from django.db import connections

    from syndarix import db
    from syndarix.asgi import application

    threads, kept = [], db._kept
    used = set()  # the requests' database connections

    def looking_up(key):
        threads.append(threading.current_thread().name)
        used.add(connections["default"])
        return kept(key)

    monkeypatch.setattr(db, "_kept", looking_up)
    project = factories.ProjectFactory(owner=user)
    agent = factories.AgentFactory(project=project, agent_type=agent_type, name="asgi")
    token = factories.token_for(user)

    async def call(path: str) -> tuple[int, bytes]:
        communicator = ApplicationCommunicator(application, {
            "type": "http", "method": "GET", "path": path, "query_string": b"", "scheme": "http",
            "http_version": "1.1", "server": ("testserver", 80), "client": ("127.0.0.1", 50000),
            "headers": [(b"host", b"testserver"), (b"authorization", f"Token {token}".encode()),
                        (b"accept", b"application/json")],
        })
        await communicator.send_input({"type": "http.request", "body": b""})
        start = await communicator.receive_output(10)
        body = await communicator.receive_output(10)
        return start["status"], body["body"]

    def get(path: str) -> tuple[bytes, str]:
        compiles.clear()
        threads.clear()
        status, body = asyncio.run(call(path))  # as the server calls it
        assert status == 200, body
        return body, threads[-1]

    try:
        for path in (agents_url(project), f"{agents_url(project)}/{agent.pk}"):
            _, first = get(path)
            assert compiles  # the first request compiles
            body, second = get(path)
            assert (compiles, second != first) == ([], True), path  # the next, on another thread, compiles nothing
            assert b'"asgi"' in body
    finally:  # the requests' threads are gone: give their connections back from here
        for wrapper in used:
            wrapper.inc_thread_sharing()
            wrapper.close()


def test_q_uses_a_trigram_index_on_postgresql(owner_client, project, agent_type):
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'agent_name_trgm_idx'")
        (definition,) = cursor.fetchone()
    assert "gin" in definition and "gin_trgm_ops" in definition and "upper" in definition.lower()
    factories.AgentFactory(project=project, agent_type=agent_type, name="Coder-4E21")
    factories.AgentFactory(project=project, agent_type=agent_type, name="planner-77")
    assert [row["name"] for row in owner_client.get(agents_url(project), {"q": "coder-4e"}).json()["data"]] == [
        "Coder-4E21"
    ]


def write_queries(client, method: str, url: str, body=None) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = getattr(client, method)(url, body or {}, format="json")
    assert response.status_code in (200, 201), response.content
    return len(captured.captured_queries)


def test_hot_paths_read_their_agent_once_and_do_not_grow_with_the_fleet(project, agent_type, user):
    """Query counts of each hot path, for a project of 1 agent and of 30: equal, and pinned."""
    operator = factories.UserFactory()
    factories.MembershipFactory(workspace=project.workspace, user=operator, role=WorkspaceRole.OPERATOR)
    client = client_for(operator)
    agent = factories.AgentFactory(project=project, agent_type=agent_type)
    factories.IssueFactory(project=project, assigned_agent=agent)

    def counts() -> dict[str, int]:
        return {
            "detail": write_queries(client, "get", agents_url(project, agent)),
            "metrics": write_queries(client, "get", agents_url(project) + "/metrics"),
            "pause": write_queries(client, "post", agents_url(project, agent, "pause")),
            "resume": write_queries(client, "post", agents_url(project, agent, "resume")),
            "usage": write_queries(client, "post", agents_url(project, agent, "usage"), {"tokens": 5}),
            "spawn": write_queries(client, "post", agents_url(project),
                                   {"agent_type_id": str(agent_type.pk), "name": "new"}),
        }

    write_queries(client, "get", agents_url(project))  # the token and the project access cached
    one = counts()
    for n in range(30):
        other = factories.AgentFactory(project=project, agent_type=agent_type)
        factories.IssueFactory(project=project, assigned_agent=other)
        if n % 3 == 0:
            services.agent_pause(other)
    assert counts() == one
    # Each: the token and the project with the caller's role come from the cache, then what the path needs. A write
    # runs in one transaction (here a savepoint pair, as the test is a transaction; in production BEGIN and COMMIT),
    # locks and reads its agent once, and the service joins the view's transaction without a savepoint of its own.
    assert one == {
        "detail": 1,  # the agent with its joins and issue count
        "metrics": 1,  # the project's counter rows
        "pause": 7,  # locked agent read (joins, issue count), agent update, ledger insert, its event, counter upsert
        "resume": 7,  # (+ after commit, the runtime looks for a queued run)
        "usage": 5,  # locked agent read, agent update, counter upsert
        "spawn": 11,  # agent type, revision, workspace lock, live counter, inserts (the ledger's event too), counter
        # upserts (no issue count)
    }


def test_the_compiled_agent_representation_equals_drfs(project, user):
    """``CompiledRepresentationMixin`` renders exactly what DRF's field-by-field path renders."""
    from rest_framework import serializers as drf_serializers

    from agents.selectors import agent_queryset
    from agents.serializers import AgentInstanceSerializer
    from syndarix.api.representation import _plan

    agent_type = factories.AgentTypeFactory(config_schema={})
    revision = services.agent_type_commit_revision(agent_type, template={"instructions": "hi", "tools": []})
    busy = factories.AgentFactory(project=project, agent_type=agent_type, config={"a": [1, {"b": None}]})
    services.agent_update(busy, data={"short_term_memory": {"ü": "ñ", "n": 1.5}, "max_tokens": 10**12,
                                      "max_cost_usd": "12.3"})
    services.agent_record_usage(busy, tokens=2**40, cost="0.1234565", tasks_completed=3)
    factories.IssueFactory(project=project, assigned_agent=busy)
    factories.agent_in_status(S.TERMINATED, project=project, agent_type=agent_type)
    factories.agent_in_status(S.WAITING, project=project, agent_type=agent_type)
    assert busy.agent_type_revision == revision
    rows = list(agent_queryset().filter(project=project))
    assert len(rows) == 3
    for row in rows:
        serializer = AgentInstanceSerializer(row)
        assert _plan(serializer) is not None  # the compiled path, not a fallback
        drf = drf_serializers.ModelSerializer.to_representation(serializer, row)
        assert serializer.data == drf
        assert list(serializer.data) == list(drf)
