"""Versioned shared contexts: write/read/rollback/diff/merge semantics, limits, retention, isolation,
immutability, and the version allocator under real concurrency on PostgreSQL."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from agents.contexts import services as contexts
from agents.exceptions import (
    AgentTerminated,
    AlreadyCurrentVersion,
    ContextExists,
    ContextNotFound,
    ContextNotWritable,
    VersionConflict,
    VersionNotFound,
    VersionPruned,
)
from agents.models import AgentContext, AgentContextVersion
from syndarix.exceptions import InvalidInput, PayloadTooLarge
from tests import factories
from tests.threads import failures, run_concurrently

pytestmark = pytest.mark.django_db


@pytest.fixture
def context(project, user):
    return contexts.context_create(project=project, name="plan", data={"goal": "ship"}, actor=user)


def numbers(context) -> list[int]:
    return sorted(AgentContextVersion.objects.filter(context=context).values_list("version", flat=True))


def nested(depth: int) -> dict:
    """A JSON object ``depth`` levels deep (the top-level object counts as one)."""
    data: dict = {}
    for _ in range(depth - 1):
        data = {"x": data}
    return data


# --- create / write / read ---


def test_create_makes_version_one(context, user):
    assert context.current_version == 1
    version = contexts.context_read(context)
    assert (version.version, version.data, version.created_by_user, version.restored_from) == (1, {"goal": "ship"},
                                                                                                user, None)


def test_create_without_data_starts_empty(project):
    ctx = contexts.context_create(project=project, name="empty")
    assert contexts.context_read(ctx).data == {}
    assert contexts.context_read(ctx).created_by is None


def test_write_appends_the_next_version_and_keeps_the_old_one(context, user):
    version = contexts.context_write(context, {"goal": "test"}, actor=user, change_description="narrow")
    assert version.version == 2
    assert version.context.current_version == 2
    assert AgentContext.objects.get(pk=context.pk).current_version == 2
    assert contexts.context_read(context).data == {"goal": "test"}
    assert contexts.context_read(context, 1).data == {"goal": "ship"}
    assert contexts.context_read(context, 2).change_description == "narrow"


def test_merge_applies_a_json_merge_patch(context):
    contexts.context_write(context, {"goal": "ship", "team": {"lead": "ada", "size": 3}, "tags": ["a"]})
    version = contexts.context_write(
        context, {"team": {"size": None, "qa": "bob"}, "tags": ["b"], "goal": None}, mode="merge"
    )
    assert version.data == {"team": {"lead": "ada", "qa": "bob"}, "tags": ["b"]}


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [  # RFC 7396, Appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_json_merge_patch_rfc7396_examples(target, patch, result):
    assert contexts.json_merge_patch(target, patch) == result


def test_merge_patch_does_not_modify_its_arguments():
    target, patch = {"a": {"b": 1}}, {"a": {"c": 2}}
    contexts.json_merge_patch(target, patch)
    assert (target, patch) == ({"a": {"b": 1}}, {"a": {"c": 2}})


def test_unknown_mode_is_refused(context):
    with pytest.raises(InvalidInput) as info:
        contexts.context_write(context, {}, mode="append")
    assert info.value.field == "mode"
    assert numbers(context) == [1]


def test_expected_version_conflict_reports_the_current_version(context):
    contexts.context_write(context, {"n": 2}, expected_version=1)
    with pytest.raises(VersionConflict) as info:
        contexts.context_write(context, {"n": 3}, expected_version=1)
    assert info.value.status_code == 409
    assert info.value.extra == {"current_version": 2, "expected_version": 1}
    assert numbers(context) == [1, 2]


def test_reading_a_version_that_never_existed_is_version_not_found(context):
    for number in (0, 2, 99):
        with pytest.raises(VersionNotFound):
            contexts.context_read(context, number)


@pytest.mark.parametrize("number", [0, -1, 2**31, 10**30])
def test_version_numbers_outside_the_column_are_not_found_without_a_query(context, number,
                                                                          django_assert_num_queries):
    with django_assert_num_queries(0), pytest.raises(VersionNotFound):
        contexts.context_read(context, number)
    with django_assert_num_queries(0), pytest.raises(VersionNotFound):
        contexts.context_diff(context, 1, number)
    with django_assert_num_queries(0), pytest.raises(VersionNotFound):
        contexts.context_diff(context, number, 1)


def test_duplicate_names_conflict_per_project_and_agent(project, agent):
    contexts.context_create(project=project, name="plan")
    with pytest.raises(ContextExists):
        contexts.context_create(project=project, name="plan")
    # The same name for one agent, and in another project, is another context.
    contexts.context_create(project=project, name="plan", instance=agent)
    with pytest.raises(ContextExists):
        contexts.context_create(project=project, name="plan", instance=agent)
    contexts.context_create(project=factories.ProjectFactory(), name="plan")
    assert AgentContext.objects.filter(name="plan").count() == 3


def test_create_refuses_an_agent_of_another_project(project):
    stranger = factories.AgentFactory()
    with pytest.raises(InvalidInput) as info:
        contexts.context_create(project=project, name="x", instance=stranger)
    assert info.value.field == "instance_id"
    assert not AgentContext.objects.exists()


@pytest.mark.parametrize("name", ["", "   ", "a" * 201, "nul\x00name"])
def test_create_refuses_bad_names(project, name):
    with pytest.raises(InvalidInput):
        contexts.context_create(project=project, name=name)
    assert not AgentContext.objects.exists()


# --- agents as writers ---


def test_an_agent_write_records_the_agent(project, agent):
    ctx = contexts.context_create(project=project, name="shared")
    version = contexts.context_write(ctx, {"seen": True}, actor=agent)
    assert (version.created_by_agent, version.created_by_user) == (agent, None)
    own = contexts.context_create(project=project, name="mine", instance=agent, actor=agent)
    assert contexts.context_read(own).created_by_agent == agent


def test_an_agent_cannot_write_another_agents_or_projects_context(project, agent, agent_type):
    other = factories.AgentFactory(project=project, agent_type=agent_type)
    private = contexts.context_create(project=project, name="mine", instance=other)
    with pytest.raises(ContextNotWritable):
        contexts.context_write(private, {"x": 1}, actor=agent)
    foreign = contexts.context_create(project=factories.ProjectFactory(), name="theirs")
    with pytest.raises(ContextNotWritable):
        contexts.context_write(foreign, {"x": 1}, actor=agent)
    assert numbers(private) == [1] and numbers(foreign) == [1]


def test_a_terminated_agent_cannot_write(project):
    agent = factories.agent_in_status("terminated", project=project)
    ctx = contexts.context_create(project=project, name="shared")
    with pytest.raises(AgentTerminated):
        contexts.context_write(ctx, {"x": 1}, actor=agent)
    assert numbers(ctx) == [1]


# --- rollback ---


def test_rollback_appends_a_copy_of_the_target(context, user):
    contexts.context_write(context, {"goal": "test"})
    contexts.context_write(context, {"goal": "deploy"})
    version = contexts.context_rollback(context, 1, actor=user)
    assert (version.version, version.data, version.restored_from) == (4, {"goal": "ship"}, 1)
    assert version.change_description == "Rolled back to version 1."
    assert version.created_by_user == user
    # Nothing is lost: every version is still there, and rolling "forward" works the same way.
    assert [contexts.context_read(context, n).data["goal"] for n in (1, 2, 3, 4)] == ["ship", "test", "deploy",
                                                                                       "ship"]
    assert contexts.context_rollback(context, 3).data == {"goal": "deploy"}


def test_rollback_to_the_current_version_is_a_conflict(context):
    contexts.context_write(context, {"goal": "test"})
    with pytest.raises(AlreadyCurrentVersion) as info:
        contexts.context_rollback(context, 2)
    assert info.value.status_code == 409
    assert numbers(context) == [1, 2]


def test_rollback_to_a_missing_version_is_not_found(context):
    with pytest.raises(VersionNotFound):
        contexts.context_rollback(context, 7)


# --- diff ---


def test_diff_is_an_rfc6902_patch(context):
    contexts.context_write(context, {"goal": "ship", "team": ["ada"], "done": False})
    contexts.context_write(context, {"goal": "test", "team": ["ada", "bob"]})
    patch = contexts.context_diff(context, 2, 3)
    assert sorted(patch, key=lambda op: op["path"]) == [
        {"op": "remove", "path": "/done"},
        {"op": "replace", "path": "/goal", "value": "test"},
        {"op": "add", "path": "/team/1", "value": "bob"},
    ]
    import jsonpatch

    assert jsonpatch.apply_patch(contexts.context_read(context, 2).data, patch) == contexts.context_read(context).data
    assert contexts.context_diff(context, 3, 3) == []


def test_diff_with_a_missing_version_is_not_found(context):
    with pytest.raises(VersionNotFound):
        contexts.context_diff(context, 1, 5)


# --- limits: refused before anything is written ---


def test_oversize_data_is_refused_and_nothing_is_written(context, settings):
    settings.AGENT_CONTEXT_MAX_BYTES = 100
    with pytest.raises(PayloadTooLarge) as info:
        contexts.context_write(context, {"blob": "x" * 100})
    assert info.value.status_code == 413
    assert info.value.extra["max_bytes"] == 100 and info.value.extra["size_bytes"] == 111
    assert numbers(context) == [1]
    assert AgentContext.objects.get(pk=context.pk).current_version == 1


def test_the_size_limit_is_inclusive_and_counts_utf8_bytes(context, settings):
    settings.AGENT_CONTEXT_MAX_BYTES = 14
    contexts.context_write(context, {"k": "ééé"})  # {"k":"ééé"} is 14 bytes
    with pytest.raises(PayloadTooLarge):
        contexts.context_write(context, {"k": "éééé"})
    assert numbers(context) == [1, 2]


def test_a_merge_whose_result_is_too_large_is_refused(context, settings):
    settings.AGENT_CONTEXT_MAX_BYTES = 60
    contexts.context_write(context, {"a": "x" * 40})
    with pytest.raises(PayloadTooLarge):
        contexts.context_write(context, {"b": "y" * 40}, mode="merge")
    assert numbers(context) == [1, 2]


def test_oversize_create_writes_nothing(project, settings):
    settings.AGENT_CONTEXT_MAX_BYTES = 10
    with pytest.raises(PayloadTooLarge):
        contexts.context_create(project=project, name="big", data={"blob": "x" * 10})
    assert not AgentContext.objects.exists()


@pytest.mark.parametrize(
    "data",
    [{"text": "a\x00b"}, {"a\x00": 1}, {"list": ["ok", {"deep": "\x00"}]}],
    ids=["value", "key", "nested"],
)
def test_nul_characters_are_refused_and_nothing_is_written(context, data):
    with pytest.raises(InvalidInput) as info:
        contexts.context_write(context, data)
    assert (info.value.code, info.value.status_code, info.value.field) == ("nul_character", 400, "data")
    assert numbers(context) == [1]


def test_nesting_is_limited_to_64_levels(context):
    contexts.context_write(context, nested(64))
    with pytest.raises(InvalidInput) as info:
        contexts.context_write(context, nested(65))
    assert info.value.code == "nesting_too_deep"
    with pytest.raises(InvalidInput):  # far beyond the interpreter's recursion limit
        contexts.context_write(context, nested(100_000))
    assert numbers(context) == [1, 2]


@pytest.mark.parametrize("data", [[1, 2], "text", None, {"nan": float("nan")}, {"s": "\ud800"}, {1: "x"},
                                  {"o": object()}])
def test_data_must_be_a_json_object(context, data):
    with pytest.raises(InvalidInput) as info:
        contexts.context_write(context, data)
    assert info.value.code == "invalid_data"
    assert numbers(context) == [1]


def test_nul_in_change_description_is_refused(context):
    with pytest.raises(InvalidInput):
        contexts.context_write(context, {}, change_description="a\x00")
    assert numbers(context) == [1]


# --- retention ---


def test_retention_keeps_the_newest_n_plus_pinned_plus_current(context, settings):
    settings.AGENT_CONTEXT_HISTORY_LIMIT = 5
    contexts.context_write(context, {"n": 2})
    contexts.context_pin(context, 2)
    for n in range(3, 13):
        contexts.context_write(context, {"n": n})
    assert numbers(context) == [2, 8, 9, 10, 11, 12]
    with pytest.raises(VersionPruned) as info:
        contexts.context_read(context, 1)
    assert info.value.status_code == 404
    assert contexts.context_read(context, 2).data == {"n": 2}


def test_the_current_version_survives_the_smallest_limit(context, settings):
    settings.AGENT_CONTEXT_HISTORY_LIMIT = 0  # treated as 1: the current version is never pruned
    contexts.context_write(context, {"n": 2})
    contexts.context_write(context, {"n": 3})
    assert numbers(context) == [3]


def test_a_pruned_version_cannot_be_rolled_back_to_pinned_or_diffed(context, settings):
    settings.AGENT_CONTEXT_HISTORY_LIMIT = 2
    for n in range(2, 5):
        contexts.context_write(context, {"n": n})
    for call in (
        lambda: contexts.context_rollback(context, 1),
        lambda: contexts.context_pin(context, 1),
        lambda: contexts.context_diff(context, 1, 4),
    ):
        with pytest.raises(VersionPruned):
            call()
    assert numbers(context) == [3, 4]


def test_rolling_back_to_a_pinned_version_outside_the_window(context, settings):
    settings.AGENT_CONTEXT_HISTORY_LIMIT = 2
    contexts.context_pin(context, 1)
    for n in range(2, 6):
        contexts.context_write(context, {"n": n})
    version = contexts.context_rollback(context, 1)
    assert (version.version, version.data, version.restored_from) == (6, {"goal": "ship"}, 1)
    assert numbers(context) == [1, 5, 6]


def test_unpinned_versions_go_with_the_next_write(context, settings):
    settings.AGENT_CONTEXT_HISTORY_LIMIT = 2
    assert contexts.context_pin(context, 1).pinned is True
    assert contexts.context_pin(context, 1).pinned is True  # idempotent
    for n in range(2, 5):
        contexts.context_write(context, {"n": n})
    assert contexts.context_unpin(context, 1).pinned is False
    assert numbers(context) == [1, 3, 4]
    contexts.context_write(context, {"n": 5})
    assert numbers(context) == [4, 5]


def test_context_prune_backfills_a_lowered_limit(context, settings):
    for n in range(2, 11):
        contexts.context_write(context, {"n": n})
    contexts.context_pin(context, 3)
    assert contexts.context_prune(context, limit=4, dry_run=True) == 5
    assert numbers(context) == list(range(1, 11))
    assert contexts.context_prune(context, limit=4) == 5
    assert numbers(context) == [3, 7, 8, 9, 10]
    assert contexts.context_prune(context, limit=4) == 0


def test_prune_command(project, settings, capsys):
    first = contexts.context_create(project=project, name="a")
    second = contexts.context_create(project=project, name="b")
    for n in range(2, 8):
        contexts.context_write(first, {"n": n})
        contexts.context_write(second, {"n": n})
    call_command("prune_context_versions", "--limit", "3", "--dry-run", verbosity=2)
    out = capsys.readouterr().out
    assert "Would prune 8 versions from 2 contexts" in out
    assert numbers(first) == list(range(1, 8))
    call_command("prune_context_versions", "--limit", "3", "--context", str(first.pk))
    assert "Pruned 4 versions from 1 contexts (keeping 3)." in capsys.readouterr().out
    assert numbers(first) == [5, 6, 7] and numbers(second) == list(range(1, 8))
    call_command("prune_context_versions", "--limit", "3", verbosity=0)
    assert numbers(second) == [5, 6, 7]
    assert capsys.readouterr().out == ""
    settings.AGENT_CONTEXT_HISTORY_LIMIT = 2
    call_command("prune_context_versions")
    assert "Pruned 2 versions from 2 contexts" in capsys.readouterr().out
    assert numbers(first) == [6, 7]


def test_prune_command_refuses_a_bad_limit():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("prune_context_versions", "--limit", "0")
    with pytest.raises(CommandError):
        call_command("prune_context_versions", "--context", "not-a-uuid")


# --- immutability and deletion ---


def test_versions_are_immutable(context):
    version = contexts.context_read(context)
    version.data = {"goal": "hacked"}
    with pytest.raises(ValueError):
        version.save()
    with pytest.raises(ValueError):
        version.save(update_fields=["data", "pinned"])
    with pytest.raises(TypeError):
        AgentContextVersion.objects.filter(pk=version.pk).update(data={"goal": "hacked"})
    with pytest.raises(ValueError):
        version.delete()
    assert contexts.context_read(context).data == {"goal": "ship"}


def test_delete_removes_the_context_and_its_history(context):
    contexts.context_write(context, {"goal": "test"})
    contexts.context_delete(context)
    assert not AgentContext.objects.filter(pk=context.pk).exists()
    assert not AgentContextVersion.objects.filter(context_id=context.pk).exists()
    with pytest.raises(ContextNotFound):
        contexts.context_write(context, {"goal": "zombie"})
    with pytest.raises(ContextNotFound):
        contexts.context_delete(context)


# --- isolation ---


def test_contexts_are_isolated_across_projects_and_workspaces(project):
    same_workspace = factories.ProjectFactory(workspace=project.workspace)
    other_workspace = factories.ProjectFactory()
    mine = contexts.context_create(project=project, name="plan", data={"who": "me"})
    sibling = contexts.context_create(project=same_workspace, name="plan", data={"who": "sibling"})
    foreign = contexts.context_create(project=other_workspace, name="plan", data={"who": "foreign"})
    contexts.context_write(mine, {"who": "me", "v": 2})
    assert [c.pk for c in contexts.context_queryset().filter(project=project)] == [mine.pk]
    assert (numbers(sibling), numbers(foreign)) == ([1], [1])
    assert contexts.context_read(sibling).data == {"who": "sibling"}
    assert contexts.context_read(foreign).data == {"who": "foreign"}
    # A version number of one context never reads another context's data.
    with pytest.raises(VersionNotFound):
        contexts.context_read(sibling, 2)


# --- selectors ---


def test_context_queryset_annotations(context, settings):
    settings.AGENT_CONTEXT_HISTORY_LIMIT = 3
    for n in range(2, 6):
        contexts.context_write(context, {"n": n})
    contexts.context_pin(context, 4)
    row = contexts.context_queryset(with_data=True).get(pk=context.pk)
    assert (row.versions_count, row.pinned_count, row.oldest_version, row.current_data) == (3, 1, 3, {"n": 5})


def test_write_query_count_does_not_grow_with_history(context, settings, django_assert_num_queries):
    settings.AGENT_CONTEXT_HISTORY_LIMIT = 3
    for n in range(2, 5):
        contexts.context_write(context, {"n": n})
    # savepoint, lock, insert, update, prune, release
    with django_assert_num_queries(6):
        contexts.context_write(context, {"n": 5})
    for n in range(6, 40):
        contexts.context_write(context, {"n": n})
    with django_assert_num_queries(6):
        contexts.context_write(context, {"n": 40})


# --- concurrency (real PostgreSQL transactions, one connection per thread) ---


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_get_gapless_unique_versions(settings):
    settings.AGENT_CONTEXT_HISTORY_LIMIT = 1000
    project = factories.ProjectFactory()
    ctx = contexts.context_create(project=project, name="busy")

    def writer(index: int) -> list[int]:
        return [contexts.context_write(ctx, {"thread": index, "n": n}).version for n in range(20)]

    results = run_concurrently(16, writer)
    assert not failures(results), results
    allocated = sorted(v for r in results for v in r)
    assert allocated == list(range(2, 322))  # 320 writes after the creating version 1
    assert numbers(ctx) == list(range(1, 322))
    assert AgentContext.objects.get(pk=ctx.pk).current_version == 321
    # Every thread's own writes are in order, and each version holds what its writer wrote.
    for index, versions in enumerate(results):
        assert versions == sorted(versions)
        assert [AgentContextVersion.objects.get(context=ctx, version=v).data for v in versions] == [
            {"thread": index, "n": n} for n in range(20)
        ]


@pytest.mark.django_db(transaction=True)
def test_two_writers_with_the_same_expected_version_exactly_one_wins():
    project = factories.ProjectFactory()
    ctx = contexts.context_create(project=project, name="contested")

    def writer(index: int):
        return contexts.context_write(ctx, {"winner": index}, expected_version=1)

    results = run_concurrently(2, writer)
    wins = [r for r in results if isinstance(r, AgentContextVersion)]
    losses = [r for r in results if isinstance(r, VersionConflict)]
    assert (len(wins), len(losses)) == (1, 1), results
    assert wins[0].version == 2
    assert losses[0].extra["current_version"] == 2
    assert numbers(ctx) == [1, 2]
    assert contexts.context_read(ctx).data == wins[0].data
