"""``manage.py cancel_run RUN_ID [RUN_ID ...]``: cancel runs (a running one stops at its next step)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from agents.exceptions import SERVICE_ERRORS, describe_error
from agents.models import AgentRun
from agents.runtime.services import run_cancel

from ._base import _as_uuid, dry_run_atomic, get_user


class Command(BaseCommand):
    help = (
        "Cancel runs: queued, paused and waiting runs at once; a running run stops at its next step boundary and "
        "its agent goes back to idle. Cancelling a cancelled run changes nothing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="Id(s) of the run(s).")
        parser.add_argument("--actor", metavar="USERNAME", help="User recorded as cancelling (default: the system).")
        parser.add_argument("--dry-run", action="store_true", help="Check the cancel, then roll it back.")

    def handle(self, *args, **options) -> None:
        actor = get_user(options["actor"])
        failures = []
        for value in options["run_ids"]:
            pk = _as_uuid(value)
            run = AgentRun.objects.filter(pk=pk).select_related("agent").first() if pk else None
            if run is None:
                failures.append(f"No run with id {value}.")
                continue
            before = run.status
            try:
                with dry_run_atomic(options["dry_run"]):
                    run = run_cancel(run, actor=actor)
            except SERVICE_ERRORS as exc:
                failures.append(f"Cannot cancel run {value}: {describe_error(exc)}")
                continue
            if options["verbosity"] >= 1:
                if before == run.status:
                    self.stdout.write(f"Run {run.pk} is already {run.status}; nothing to do.")
                else:
                    prefix = "Would have cancelled" if options["dry_run"] else "Cancelled"
                    self.stdout.write(self.style.SUCCESS(f"{prefix} run {run.pk} of '{run.agent.name}' ({before})."))
        if options["dry_run"] and options["verbosity"] >= 1:
            self.stdout.write("Dry run: nothing was changed.")
        if failures:
            for failure in failures if len(failures) > 1 else ():
                self.stderr.write(failure)
            if len(failures) == 1:
                raise CommandError(failures[0])
            raise CommandError(f"{len(failures)} run(s) could not be cancelled.")
