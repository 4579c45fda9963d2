import json
from decimal import Decimal

from django.core.management.base import BaseCommand

from agents.selectors import project_agent_summary
from projects.models import Project

from ._base import get_project

_COUNTS = (
    ("idle", "idle_instances"),
    ("working", "active_instances"),
    ("waiting", "waiting_instances"),
    ("paused", "paused_instances"),
    ("terminated", "terminated_instances"),
    ("total", "total_instances"),
    ("tasks", "total_tasks_completed"),
    ("tokens", "total_tokens_used"),
)
_KEYS = [key for _, key in _COUNTS] + ["total_cost_incurred"]
MICRO_USD = Decimal("0.000001")


class Command(BaseCommand):
    help = (
        "Agent metrics per project: agents by status, tasks completed, tokens used and cost (USD), "
        "as a table or as JSON (--json). Playground agents are left out unless --include-playground. "
        "One aggregate query."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--workspace", metavar="SLUG", help="Only this workspace's projects.")
        parser.add_argument("--project", help="Only this project (id, <workspace>/<project>, or slug).")
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
        parser.add_argument(
            "--include-playground", action="store_true", help="Count playground agents too (left out by default)."
        )

    def handle(self, *args, **options) -> None:
        projects = Project.objects.all()
        if options["workspace"]:
            projects = projects.filter(workspace__slug=options["workspace"])
        if options["project"]:
            projects = projects.filter(pk=get_project(options["project"]).pk)
        rows = [
            {
                "project_id": str(p.pk), "project": p.name, "project_slug": p.slug, "workspace": p.workspace.slug,
                **{key: getattr(p, key) for key in _KEYS},
            }
            for p in project_agent_summary(projects, include_playground=options["include_playground"])
        ]
        totals = {key: sum((row[key] for row in rows), Decimal("0") if key == "total_cost_incurred" else 0)
                  for key in _KEYS}
        if options["json"]:
            for item in [*rows, totals]:  # USD to the micro-dollar, as stored
                item["total_cost_incurred"] = str(Decimal(item["total_cost_incurred"]).quantize(MICRO_USD))
            self.stdout.write(json.dumps({"projects": rows, "totals": totals}, indent=2))
            return
        self.stdout.write(self.table(rows, totals))

    def table(self, rows: list[dict], totals: dict) -> str:
        header = ["project", *(label for label, _ in _COUNTS), "cost (USD)"]

        def cells(name: str, values: dict) -> list[str]:
            return [name, *(f"{values[key]:,}" for _, key in _COUNTS), f"{values['total_cost_incurred']:,.4f}"]

        body = [cells(f"{r['workspace']}/{r['project_slug']}", r) for r in rows]
        footer = cells("TOTAL", totals)
        widths = [max(len(line[i]) for line in [header, *body, footer]) for i in range(len(header))]

        def fmt(line: list[str]) -> str:
            padded = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True)))
            return "  ".join(padded)

        rule = "  ".join("-" * w for w in widths)
        if not rows:
            return "No projects."
        return "\n".join([self.style.MIGRATE_HEADING(fmt(header)), rule, *map(fmt, body), rule, fmt(footer)])
