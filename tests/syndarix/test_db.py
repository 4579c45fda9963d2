"""``save_unique``: losing a unique race is a 400; any other integrity error is not disguised.
``evaluate_compiled_once``: a queryset's SQL compiled once per key, its rows read anew each time; ``fetch_compiled``:
the same, run again with each call's parameters."""

from __future__ import annotations

import threading

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.transaction import TransactionManagementError

from projects.models import Project, Workspace
from syndarix import db
from syndarix.db import evaluate_compiled_once, fetch_compiled, save_unique
from syndarix.exceptions import InvalidInput
from tests.factories import ProjectFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


def test_a_taken_value_becomes_invalid_input_and_the_transaction_stays_usable():
    WorkspaceFactory(slug="taken")
    with pytest.raises(InvalidInput) as info:
        save_unique(
            lambda: Workspace.objects.create(name="x", slug="taken"),
            taken=lambda: Workspace.objects.filter(slug="taken").exists(), field="slug", message="Slug taken.",
        )
    assert (info.value.code, info.value.field, info.value.message) == ("unique", "slug", "Slug taken.")
    assert Workspace.objects.count() == 1  # the savepoint rolled back; queries still work


def test_another_integrity_error_propagates():
    with pytest.raises(IntegrityError):
        save_unique(
            lambda: Workspace.objects.create(name=None, slug="fresh"),
            taken=lambda: Workspace.objects.filter(slug="fresh").exists(), field="slug", message="Slug taken.",
        )
    assert not Workspace.objects.exists()


def test_a_successful_write_returns_its_result():
    created = save_unique(lambda: Workspace.objects.create(name="x", slug="x"), taken=lambda: True, field="slug",
                          message="never")
    assert Workspace.objects.get(slug="x") == created


def test_a_queryset_is_compiled_once_per_key_and_its_rows_read_each_time(compiles):
    workspace = WorkspaceFactory()
    first = ProjectFactory(workspace=workspace, slug="a")
    compiles.clear()

    def page(**filters):
        return workspace.projects.filter(**filters).select_related("owner").order_by("slug")[:10]

    assert evaluate_compiled_once(page(), "page") == [first]
    assert len(compiles) == 1
    second = ProjectFactory(workspace=workspace, slug="b")
    compiles.clear()
    rows = evaluate_compiled_once(page(), "page")
    assert (rows, compiles) == ([first, second], [])  # new rows, no new compilation
    # The rows are built as Django builds them: the join filled, the known workspace attached, nothing queried.
    assert rows[1].owner == second.owner and rows[1].workspace is workspace
    assert evaluate_compiled_once(page(slug="b"), "b only") == [second]
    assert len(compiles) == 1  # another key, another compilation


def test_the_callers_queryset_and_its_clones_compile_as_usual(compiles):
    project = ProjectFactory()
    queryset = Project.objects.filter(pk=project.pk)
    evaluate_compiled_once(queryset, "one project")
    evaluate_compiled_once(queryset, "one project")
    assert queryset.count() == 1 and queryset.filter(slug="elsewhere").exists() is False
    assert list(queryset.values_list("slug", flat=True)) == [project.slug]


def test_a_queryset_that_matches_nothing_is_not_run(compiles, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert evaluate_compiled_once(Project.objects.filter(pk__in=[]), "nothing") == []


def test_the_least_recently_used_compilation_goes_past_the_limit(compiles, monkeypatch):
    monkeypatch.setattr(db, "COMPILED_QUERIES", 2)
    ProjectFactory()
    compiles.clear()
    for key in ("a", "b", "a", "c", "a", "b"):  # "c" pushes out "b" (least recently used), not "a"
        evaluate_compiled_once(Project.objects.all(), key)
    assert len(compiles) == 4  # a, b, c, and b again


def test_fetch_compiled_compiles_once_and_runs_the_sql_with_each_calls_parameters(compiles):
    """``fetch_compiled``: the SQL of a key's first queryset, run again with another row's id, reads that row."""
    first, second = ProjectFactory(slug="first"), ProjectFactory(slug="second")
    built = []

    def by_id(pk):
        def build():
            built.append(pk)
            return Project.objects.select_related("workspace").filter(pk=pk)
        return fetch_compiled("project by id", build, [pk])

    compiles.clear()
    assert by_id(first.pk) == [first]
    assert (len(compiles), built) == (1, [first.pk])
    rows = by_id(second.pk)
    assert (rows, len(compiles), built) == ([second], 1, [first.pk])  # no new queryset, no new compilation
    assert rows[0].workspace == second.workspace  # the join is read as Django reads it
    assert by_id(first.pk)[0].slug == "first"
    Project.objects.filter(pk=first.pk).update(slug="renamed")
    assert by_id(first.pk)[0].slug == "renamed"  # the rows are read anew, only the SQL is kept


def test_fetch_compiled_keeps_nothing_when_the_sql_has_other_parameters(compiles):
    """A queryset whose SQL parameters are not exactly ``params`` (another value, another type) compiles every time
    and still answers right."""
    project = ProjectFactory(slug="alpha")
    compiles.clear()
    for _ in range(2):  # the slug is a parameter too: not what the caller gave
        assert fetch_compiled("by slug", lambda: Project.objects.filter(pk=project.pk, slug="alpha"),
                              [project.pk]) == [project]
    assert len(compiles) == 2
    compiles.clear()
    for _ in range(2):  # the id's text, where Django binds a UUID
        assert fetch_compiled("by text", lambda: Project.objects.filter(pk=project.pk), [str(project.pk)]) == [project]
    assert len(compiles) == 2


@pytest.mark.django_db(transaction=True)
def test_fetch_compiled_is_shared_by_threads_each_on_its_own_connection(compiles):
    """One process-wide compilation serves concurrent threads, each reading its own row on its own PostgreSQL
    connection (a worker runs hundreds of runs on as many threads)."""
    projects = [ProjectFactory(slug=f"p{n}") for n in range(8)]

    def by_id(project) -> list:
        return fetch_compiled("project by id", lambda: Project.objects.select_related("workspace").filter(
            pk=project.pk), [project.pk])

    assert by_id(projects[0]) == [projects[0]]  # compiled here, on this thread
    compiles.clear()
    start, read, failures = threading.Barrier(len(projects)), {}, []

    def reader(project) -> None:
        try:
            start.wait(10)
            for _ in range(20):
                rows = by_id(project)
                read.setdefault(project.slug, set()).add((rows[0].slug, rows[0].workspace.slug))
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=reader, args=(project,)) for project in projects]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert read == {p.slug: {(p.slug, p.workspace.slug)} for p in projects}
    assert compiles == []  # the other threads ran what this one compiled


@pytest.mark.django_db(transaction=True)
def test_a_kept_select_for_update_still_needs_a_transaction(compiles):
    """Django refuses ``select_for_update`` outside a transaction when it compiles; the kept SQL refuses it too."""
    project = ProjectFactory()

    def locked() -> list:
        return fetch_compiled("lock project", lambda: Project.objects.select_for_update().filter(pk=project.pk),
                              [project.pk])

    with transaction.atomic():
        assert locked() == [project]
    with pytest.raises(TransactionManagementError):
        locked()
