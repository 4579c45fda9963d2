"""``manage.py prepare_demo``: the database of ``make run``, ready in one process. Safe to run again."""

from __future__ import annotations

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor


def pending_migrations(database: str = DEFAULT_DB_ALIAS) -> int:
    """How many migrations ``migrate`` would apply to ``database`` (0 when it is up to date)."""
    executor = MigrationExecutor(connections[database])
    return len(executor.migration_plan(executor.loader.graph.leaf_nodes()))


class Command(BaseCommand):
    help = (
        "Prepare the database for `make run` in one process: apply the migrations that are pending, create the "
        "cache table when the database cache is used, and load the demo data (seed_demo, which prints the "
        "credentials). Idempotent: on a prepared database it migrates nothing and seeds nothing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--credentials-file", help="Passed to seed_demo (default: .demo-credentials, git-ignored)."
        )

    def handle(self, *args, **options) -> None:
        verbosity = options["verbosity"]
        pending = pending_migrations()
        if pending:
            if verbosity:
                self.stdout.write(f"Applying {pending} migration(s)...")
            call_command("migrate", interactive=False, verbosity=max(verbosity - 1, 0), stdout=self.stdout)
        call_command("createcachetable", verbosity=max(verbosity - 1, 0), stdout=self.stdout)
        seed_options = {"verbosity": verbosity, "stdout": self.stdout}
        if options["credentials_file"]:
            seed_options["credentials_file"] = options["credentials_file"]
        call_command("seed_demo", **seed_options)
