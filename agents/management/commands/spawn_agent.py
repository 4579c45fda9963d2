import json

from django.core.management.base import BaseCommand, CommandError

from agents import services
from agents.exceptions import SERVICE_ERRORS, describe_error

from ._base import dry_run_atomic, get_agent_type, get_project, get_user


class Command(BaseCommand):
    help = (
        "Spawn an agent (born idle) with agents.services.agent_spawn. The config is a JSON object checked "
        "against the agent type's config schema; every violation is reported with its path."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--project", required=True, help="Project id, <workspace>/<project> slugs, or a slug.")
        parser.add_argument("--type", required=True, dest="agent_type", help="Agent type id or slug.")
        parser.add_argument("--name", required=True, help="Name of the new agent.")
        parser.add_argument("--config", default="{}", help='Config as a JSON object, e.g. \'{"model": "gpt-4o"}\'.')
        parser.add_argument("--task", default="", help="Initial current task.")
        parser.add_argument("--actor", metavar="USERNAME", help="User recorded as the actor (default: the system).")
        parser.add_argument("--dry-run", action="store_true", help="Validate and spawn, then roll back.")

    def handle(self, *args, **options) -> None:
        project = get_project(options["project"])
        agent_type = get_agent_type(options["agent_type"])
        try:
            config = json.loads(options["config"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--config is not valid JSON: {exc}") from None
        try:
            with dry_run_atomic(options["dry_run"]):
                agent = services.agent_spawn(
                    project=project, agent_type=agent_type, name=options["name"], config=config,
                    current_task=options["task"], actor=get_user(options["actor"]),
                )
        except SERVICE_ERRORS as exc:
            raise CommandError(f"Cannot spawn '{options['name']}': {describe_error(exc)}") from None
        if options["verbosity"] >= 1:
            if options["dry_run"]:
                self.stdout.write(f"Dry run: '{agent.name}' ({agent_type.slug}) would be spawned in {project.name}.")
            else:
                self.stdout.write(self.style.SUCCESS(
                    f"Spawned '{agent.name}' ({agent_type.slug}) in {project.workspace.slug}/{project.slug}: {agent.pk}"
                ))
        if options["verbosity"] >= 2:
            self.stdout.write(f"  status: {agent.status}; config: {json.dumps(agent.config)}")
