"""Benchmark of outages: how long a request takes to be answered when the database or the cache is lost.

Starts gunicorn (1 worker; ``tests/live.py``) with one dependency pointed at a dead port (connections refused)
or at a silent one (accepts, never answers), and prints, for ``--samples`` requests each (median and max):

- database dead / silent: ``GET /api/v1/projects`` with a token → 503 ``service_unavailable``; ``/readyz`` → 503;
- cache dead / silent, rate limits failing open (the default): ``GET /api/v1/projects`` → 200 (unlimited);
- cache dead / silent, ``RATELIMIT_FAIL_OPEN=false``: ``GET /api/v1/projects`` → 503; ``/readyz`` → 503.

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/syndarix .venv/bin/python benchmarks/bench_outages.py

The cache cases need a real user and token: it creates a throwaway database next to the one ``DATABASE_URL``
names (``bench_outages_<pid>``), migrates it, and drops it at the end. ``REDIS_URL`` (default
``redis://127.0.0.1:6379/1``) and ``CELERY_BROKER_URL`` (default ``redis://127.0.0.1:6379/2``) are the live ones.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndarix.settings")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/1")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/2")

import django  # noqa: E402

django.setup()

from _support import throwaway_database  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402

from projects.services import auth_token_create  # noqa: E402
from tests.live import Gunicorn, SilentServer, dead_port  # noqa: E402
from tests.runtime.harness import database_url  # noqa: E402


def measure(server: Gunicorn, path: str, samples: int, headers: dict[str, str]) -> tuple[set[int], list[float]]:
    answers = [server.get(path, headers=headers) for _ in range(samples)]
    return {a.status for a in answers}, [a.seconds for a in answers]


def report(label: str, statuses: set[int], seconds: list[float]) -> None:
    print(f"{label:<66} status {','.join(map(str, sorted(statuses))):<8} "
          f"median {statistics.median(seconds):.3f} s  max {max(seconds):.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args()
    if "postgresql" not in settings.DATABASES["default"]["ENGINE"]:
        sys.exit("DATABASE_URL must point at PostgreSQL.")
    log_dir = Path(tempfile.mkdtemp(prefix="bench_outages_"))
    with throwaway_database("bench_outages") as database, SilentServer() as silent:
        user = get_user_model().objects.create_user(username="bench")
        _row, token = auth_token_create(user=user)
        auth = {"Authorization": f"Token {token}"}
        live = {"DATABASE_URL": database_url(database), "REDIS_URL": settings.REDIS_URL,
                "CELERY_BROKER_URL": settings.CELERY_BROKER_URL}
        fail_closed = {"RATELIMIT_FAIL_OPEN": "false"}
        cases = [
            ("database", "dead", {"DATABASE_URL": f"postgres://postgres@127.0.0.1:{dead_port()}/x"}),
            ("database", "silent", {"DATABASE_URL": f"postgres://postgres@127.0.0.1:{silent.port}/x"}),
            ("cache", "dead", {"REDIS_URL": f"redis://127.0.0.1:{dead_port()}/0"}),
            ("cache", "silent", {"REDIS_URL": f"redis://127.0.0.1:{silent.port}/0"}),
            ("cache", "dead", {"REDIS_URL": f"redis://127.0.0.1:{dead_port()}/0", **fail_closed}),
            ("cache", "silent", {"REDIS_URL": f"redis://127.0.0.1:{silent.port}/0", **fail_closed}),
        ]
        print(f"gunicorn, 1 worker; {args.samples} requests per line")
        for dependency, mode, env in cases:
            closed = env.get("RATELIMIT_FAIL_OPEN") == "false"
            label = f"{dependency} {mode}" + (" (RATELIMIT_FAIL_OPEN=false)" if closed else "")
            with Gunicorn({**live, **env}, log_dir=log_dir) as server:
                report(f"{label}: GET /api/v1/projects", *measure(server, "/api/v1/projects", args.samples, auth))
                if dependency == "database" or closed:
                    report(f"{label}: GET /readyz", *measure(server, "/readyz", args.samples, {}))

if __name__ == "__main__":
    main()
