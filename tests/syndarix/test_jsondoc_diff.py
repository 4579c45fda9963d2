"""``syndarix.jsondoc.json_diff``: a correct RFC 6902 patch whatever the documents, at a bounded cost."""

from __future__ import annotations

import random
import time

import jsonpatch
import pytest

from syndarix.jsondoc import DIFF_ARRAY_MAX_ITEMS, DIFF_MAX_OPERATIONS, json_diff


def applied(before, patch):
    return jsonpatch.apply_patch(before, patch)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"a": 1}, {"a": 1}),
        ({"a": 1}, {"a": True}),  # JSON tells 1 from true, Python does not
        ({"a": [1]}, {"a": [True]}),
        ({"a": 1}, {"a": 1.0}),
        ({"a": {"b": [1, 2, 3]}}, {"a": {"b": [1, 3]}, "c": None}),
        ({"l": [1, 2, 3, 4]}, {"l": [4, 3, 2, 1]}),
        ({"l": [{"x": 1}, {"y": 2}]}, {"l": [{"y": 2}, {"x": 1}, {"x": 1}]}),
        ({"l": [[1, 2], [3]]}, {"l": [[3], [2, 1]]}),
        ({"k": "v"}, {}),
    ],
)
def test_the_patch_turns_before_into_after(before, after):
    patch = json_diff(before, after)
    assert applied(before, patch) == after
    assert repr(applied(before, patch)) == repr(after)  # 1, 1.0 and true stay apart
    assert json_diff(after, jsonpatch.apply_patch(after, [])) == []


def test_random_documents_round_trip():
    rng = random.Random(12)

    def value(depth):
        kind = rng.randrange(6 if depth < 4 else 3)
        if kind == 0:
            return rng.choice([0, 1, True, False, None, 1.5, "x", "y"])
        if kind in (1, 2):
            return rng.randrange(5)
        if kind in (3, 4):
            return [value(depth + 1) for _ in range(rng.randrange(6))]
        return {rng.choice("abcde"): value(depth + 1) for _ in range(rng.randrange(5))}

    for _ in range(300):
        before, after = {"d": value(0)}, {"d": value(0)}
        assert applied(before, json_diff(before, after)) == after


def test_small_changes_stay_small_in_long_arrays():
    items = list(range(100_000))
    assert json_diff({"l": items}, {"l": [*items, -1]}) == [{"op": "add", "path": "/l/100000", "value": -1}]
    changed = [*items[:50_000], -1, *items[50_001:]]
    assert json_diff({"l": items}, {"l": changed}) == [{"op": "replace", "path": "/l/50000", "value": -1}]


def test_an_array_too_long_to_match_up_is_replaced_whole():
    before = {"l": list(range(DIFF_ARRAY_MAX_ITEMS))}
    after = {"l": before["l"][::-1]}
    assert json_diff(before, after) == [{"op": "replace", "path": "/l", "value": after["l"]}]
    short = {"l": list(range(10))}
    patch = json_diff(short, {"l": short["l"][::-1]})
    assert {op["op"] for op in patch} == {"move"}


def test_the_match_budget_is_shared_by_all_arrays():
    before = {"a": list(range(400)), "b": list(range(400))}
    after = {"a": before["a"][::-1], "b": before["b"][::-1]}
    patch = json_diff(before, after, match_budget=400 * 400)
    assert [op for op in patch if op["op"] == "replace"] == [{"op": "replace", "path": "/b", "value": after["b"]}]
    assert {op["op"] for op in patch if op["path"].startswith("/a")} == {"move"}
    assert applied(before, patch) == after


def test_too_many_operations_replace_the_whole_document():
    before = {str(i): i for i in range(DIFF_MAX_OPERATIONS + 1)}
    after = {key: -value - 1 for key, value in before.items()}
    assert json_diff(before, after) == [{"op": "replace", "path": "", "value": after}]
    assert len(json_diff(before, {**before, "0": -1})) == 1


def test_a_140k_item_list_written_reversed_is_diffed_within_the_bound():
    items = list(range(140_000))
    started = time.perf_counter()
    patch = json_diff({"items": items}, {"items": items[::-1]})
    assert time.perf_counter() - started < 1.0  # the bound, with room to spare on a loaded machine
    assert patch == [{"op": "replace", "path": "/items", "value": items[::-1]}]
