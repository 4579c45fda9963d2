"""Rebuild the agent counters (per project: agents by status and usage per day; per workspace: live agents)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from agents.counters import counters_recompute
from projects.models import Workspace


class Command(BaseCommand):
    help = (
        "Recompute the agent counters that the project metrics, the agent list's totals, the admin's charts, "
        "/metrics and the spawn's concurrency check read, from the agents, runs and steps themselves, and report "
        "every value that was wrong. The services "
        "keep them exact; run this after writing agents around them (a restore, bulk SQL). Safe while the app runs: "
        "each workspace is rebuilt in a transaction of its own, with its counters locked."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--workspace", metavar="SLUG", help="Only this workspace.")
        parser.add_argument("--dry-run", action="store_true", help="Report the differences; change nothing.")

    def handle(self, *args, workspace: str | None, dry_run: bool, verbosity: int, **options) -> None:
        workspaces = Workspace.objects.all()
        if workspace:
            workspaces = workspaces.filter(slug=workspace)
            if not workspaces.exists():
                raise CommandError(f"No workspace '{workspace}'.")
        report = counters_recompute(workspaces=workspaces, dry_run=dry_run)
        if verbosity >= 2:
            for row in report:
                where = f"project {row['project']}" + (" (playground)" if row["is_playground"] else "") \
                    if row["project"] else f"workspace {row['workspace']}"
                when = f" on {row['day']}" if row["day"] else ""
                self.stdout.write(f"{where}: {row['column']}{when} {row['stored']} → {row['actual']}")
        if verbosity >= 1:
            verb = "would be corrected" if dry_run else "corrected"
            message = f"{len(report)} counter value(s) {verb}." if report else "Every counter matches the agents."
            self.stdout.write(self.style.SUCCESS(message))
