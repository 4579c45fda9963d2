"""Shared parts of the agents management commands: argument lookups and the lifecycle command base.

Commands resolve their arguments here, call ``agents.services`` and turn service errors into
``CommandError`` (exit status 1, message on stderr).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from agents.exceptions import SERVICE_ERRORS, describe_error
from agents.models import AgentInstance, AgentType
from projects.models import Project


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def get_agent(value: str) -> AgentInstance:
    """The agent with id ``value`` (a UUID), or ``CommandError``."""
    pk = _as_uuid(value)
    if pk is None:
        raise CommandError(f"'{value}' is not an agent id (a UUID).")
    try:
        return AgentInstance.objects.select_related("project", "agent_type").get(pk=pk)
    except AgentInstance.DoesNotExist:
        raise CommandError(f"No agent with id {value}.") from None


def get_project(value: str) -> Project:
    """A project by id, by ``<workspace-slug>/<project-slug>``, or by slug when that is unambiguous."""
    projects = Project.objects.select_related("workspace")
    pk = _as_uuid(value)
    if pk is not None:
        found = list(projects.filter(pk=pk))
    elif "/" in value:
        workspace_slug, _, slug = value.partition("/")
        found = list(projects.filter(workspace__slug=workspace_slug, slug=slug))
    else:
        found = list(projects.filter(slug=value)[:2])
    if not found:
        raise CommandError(f"No project '{value}'. Give its id, <workspace>/<slug>, or a slug.")
    if len(found) > 1:
        raise CommandError(f"Several workspaces have a project '{value}'; use <workspace>/{value} or the id.")
    return found[0]


def get_agent_type(value: str) -> AgentType:
    """An agent type by id or slug."""
    pk = _as_uuid(value)
    try:
        return AgentType.objects.get(pk=pk) if pk else AgentType.objects.get(slug=value)
    except AgentType.DoesNotExist:
        raise CommandError(f"No agent type '{value}'.") from None


def get_user(username: str | None):
    """The user recorded as actor in the ledger (``None``: the system)."""
    if not username:
        return None
    try:
        return get_user_model().objects.get(username=username)
    except get_user_model().DoesNotExist:
        raise CommandError(f"No user '{username}'.") from None


@contextmanager
def dry_run_atomic(dry_run: bool) -> Iterator[None]:
    """A transaction that is rolled back at the end when ``dry_run`` (after-commit signals never fire)."""
    with transaction.atomic():
        yield
        if dry_run:
            transaction.set_rollback(True)


class LifecycleCommand(BaseCommand):
    """Base of ``pause_agent``, ``resume_agent`` and ``terminate_agent``: one or more agent ids.

    Subclasses set ``verb`` / ``done`` and implement ``perform``. A refused transition (illegal,
    already terminated, agents disabled) is reported with the service's message and the command
    exits non-zero (``CommandError``) after trying every id.
    """

    verb = ""  # "pause"
    done = ""  # "paused"

    def add_arguments(self, parser) -> None:
        parser.add_argument("agent_ids", nargs="+", metavar="AGENT_ID", help="Id(s) of the agent(s).")
        parser.add_argument("--reason", default="", help="Free text recorded in the transition ledger.")
        parser.add_argument("--actor", metavar="USERNAME", help="User recorded as the actor (default: the system).")
        parser.add_argument("--dry-run", action="store_true", help="Check the transition, then roll it back.")

    def perform(self, agent: AgentInstance, *, actor, reason: str, options: dict) -> AgentInstance:
        raise NotImplementedError

    def handle(self, *args, **options) -> None:
        actor = get_user(options["actor"])
        verbosity, dry_run = options["verbosity"], options["dry_run"]
        failures = []
        for agent_id in options["agent_ids"]:
            try:
                agent = get_agent(agent_id)
            except CommandError as exc:
                failures.append(str(exc))
                continue
            before = agent.status
            try:
                with dry_run_atomic(dry_run):
                    after = self.perform(agent, actor=actor, reason=options["reason"], options=options)
            except SERVICE_ERRORS as exc:
                failures.append(f"Cannot {self.verb} '{agent.name}' ({agent.pk}): {describe_error(exc)}")
                continue
            if verbosity >= 1:
                if after.status == before:
                    self.stdout.write(f"'{agent.name}' ({agent.pk}) is already {after.status}; nothing to do.")
                else:
                    prefix = "Would have " if dry_run else ""
                    text = f"{prefix}{self.done} '{agent.name}' ({agent.pk}): {before} → {after.status}."
                    self.stdout.write(self.style.SUCCESS(text[0].upper() + text[1:]))
            if verbosity >= 2:
                self.stdout.write(f"  allowed next: {', '.join(after.allowed_transitions) or 'none'}")
        if dry_run and verbosity >= 1:
            self.stdout.write("Dry run: nothing was changed.")
        if failures:
            if len(failures) == 1:
                raise CommandError(failures[0])
            for failure in failures:
                self.stderr.write(failure)
            raise CommandError(f"{len(failures)} of {len(options['agent_ids'])} agents could not be {self.done}.")
