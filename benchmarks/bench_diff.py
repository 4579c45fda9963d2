"""Benchmark of the reads whose cost grows with stored data: context diffs and version reads.

Prints (figures only; nothing is asserted):
- ``GET …/contexts/{id}/diff`` between a 140,000-item list (the largest that fits ``AGENT_CONTEXT_MAX_BYTES``)
  and the same list written reversed: median time and answer size, through the whole API stack;
- the worst case of ``syndarix.jsondoc.json_diff`` over a set of adversarial pairs of 1 MiB documents
  (reversed and shuffled arrays, changes far apart, many small arrays, many changed keys);
- ``GET …/versions/{n}`` of a 1 MiB version and ``GET …/versions?include_data=true&limit=100`` over ten
  of them (a page with data holds at most 10 versions);
- with ``--before``, the previous diff (``jsonpatch.make_patch``) of the 140k pair, for comparison (slow).

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/syndarix .venv/bin/python benchmarks/bench_diff.py [--before]

It creates a throwaway database next to the one ``DATABASE_URL`` names (``bench_diff_<pid>``), migrates it, and
drops it at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndarix.settings")
os.environ["RATELIMIT_ENABLE"] = "false"  # rate-limit counters are not what is measured

import django  # noqa: E402

django.setup()

import jsonpatch  # noqa: E402
from _support import throwaway_database  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

ITEMS = 140_000


def _timed(fn, repeat: int = 5) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def _adversarial_pairs() -> dict[str, tuple[dict, dict]]:
    rng = random.Random(12)
    base = list(range(ITEMS))
    middle = [*base[:70_000], *rng.sample(base[70_000:70_500], 500), *base[70_500:]]
    return {
        "140k list reversed": ({"l": base}, {"l": base[::-1]}),
        "140k list, one change in the middle": ({"l": base}, {"l": [*base[:70_000], -1, *base[70_001:]]}),
        "140k list, 500 shuffled in the middle": ({"l": base}, {"l": middle}),
        "280 lists of 500 reversed": ({"l": [base[:500]] * 280}, {"l": [base[:500][::-1]] * 280}),
        "40k keys of small swapped lists": ({str(i): [i, i + 1] for i in range(40_000)},
                                            {str(i): [i + 1, i] for i in range(40_000)}),
        "70k keys all changed": ({str(i): i for i in range(70_000)}, {str(i): -i - 1 for i in range(70_000)}),
        "9000 deep small changes": ({str(i): {"x": [1, {"z": i}]} for i in range(9_000)},
                                    {str(i): {"x": [1, {"z": -i}]} for i in range(9_000)}),
    }


def run(before: bool) -> None:
    from rest_framework.test import APIClient

    from agents.contexts import services as contexts
    from syndarix.jsondoc import json_diff
    from tests import factories

    user = factories.UserFactory()
    project = factories.ProjectFactory(owner=user)
    client = APIClient()
    client.force_authenticate(user)
    items = list(range(ITEMS))
    context = contexts.context_create(project=project, name="big", data={"items": items}, actor=user)
    contexts.context_write(context, {"items": items[::-1]}, actor=user)
    url = f"/api/v1/projects/{project.pk}/contexts/{context.pk}"
    if connection.vendor == "postgresql":
        version = connection.cursor().connection.info.server_version
        print(f"PostgreSQL {version // 10000}.{version % 10000}")

    elapsed, response = _timed(lambda: client.get(f"{url}/diff", {"from": 1, "to": 2}))
    assert response.status_code == 200, response.content
    print(f"GET diff, {ITEMS:,}-item list written reversed: median {elapsed:.0f} ms, "
          f"{len(response.content) / 2**20:.2f} MiB, {len(response.json()['patch'])} operation(s)")

    worst = ("", 0.0)
    for name, (first, second) in _adversarial_pairs().items():
        elapsed, _ = _timed(lambda a=first, b=second: json_diff(a, b), repeat=3)
        print(f"  json_diff {name}: median {elapsed:.0f} ms")
        worst = max(worst, (name, elapsed), key=lambda pair: pair[1])
    print(f"json_diff worst case: {worst[1]:.0f} ms ({worst[0]})")

    for n in range(3, 11):
        contexts.context_write(context, {"items": items if n % 2 else items[::-1], "n": n}, actor=user)
    elapsed, response = _timed(lambda: client.get(f"{url}/versions/2"))
    print(f"GET one 1 MiB version: median {elapsed:.0f} ms")
    elapsed, response = _timed(lambda: client.get(f"{url}/versions", {"include_data": "true", "limit": 100}))
    print(f"GET versions?include_data=true&limit=100 (10 of 1 MiB a page): median {elapsed:.0f} ms, "
          f"{len(response.content) / 2**20:.1f} MiB, {len(response.json()['data'])} versions")

    if before:
        started = time.perf_counter()
        patch = jsonpatch.make_patch({"items": items}, {"items": items[::-1]}).patch
        print(f"before (jsonpatch.make_patch), same pair: {(time.perf_counter() - started) * 1000:.0f} ms, "
              f"{len(patch):,} operations")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", action="store_true", help="also time the previous diff (tens of seconds)")
    args = parser.parse_args()
    settings.ALLOWED_HOSTS = ["testserver"]
    with throwaway_database("bench_diff"):
        run(args.before)


if __name__ == "__main__":
    main()
