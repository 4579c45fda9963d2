"""``manage.py sync_agent_types``: create or update agent types from the registered agent classes."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from agents.registry import registry
from agents.services import agent_types_sync


class Command(BaseCommand):
    help = (
        "Create or update one agent type per registered agent class (name, description, capabilities, "
        "config schema, handler) and report created / updated / unchanged. Classes come from the "
        "built-ins and AGENT_REGISTRY_MODULES."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Report what would change; write nothing.")
        parser.add_argument(
            "--deactivate-missing",
            action="store_true",
            help="Deactivate active agent types whose handler names a class that is no longer registered.",
        )

    def handle(self, *args, dry_run: bool = False, deactivate_missing: bool = False, verbosity: int = 1, **options):
        report = agent_types_sync(registry, dry_run=dry_run, deactivate_missing=deactivate_missing)
        if verbosity >= 2:
            for outcome in ("created", "updated", "unchanged", "deactivated"):
                for slug in getattr(report, outcome):
                    self.stdout.write(f"  {outcome:<11} {slug}")
        if verbosity >= 1:
            prefix = "Dry run, nothing written. " if dry_run else ""
            self.stdout.write(self.style.SUCCESS(f"{prefix}Agent types: {report.summary()}."))
