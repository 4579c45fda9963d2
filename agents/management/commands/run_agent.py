"""``manage.py run_agent AGENT_ID --instruction "..." [--issue ISSUE_ID] [--wait]``: queue a run for a worker."""

from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand, CommandError

from agents import events
from agents.events import EventType
from agents.events.streams import event_stream, sync_stream
from agents.exceptions import SERVICE_ERRORS, describe_error
from agents.models import AgentRun
from agents.runtime.services import run_create
from projects.models import Issue

from ._base import _as_uuid, dry_run_atomic, get_agent, get_user

#: Run states ``--wait`` stops at: finished, or needing a person.
SETTLED = ("succeeded", "failed", "cancelled", "waiting", "paused")


class Command(BaseCommand):
    help = (
        "Queue a run for an agent (an instruction and/or an issue of its project); a Celery worker executes it. "
        "With --wait, follow it until it succeeds, fails, is cancelled, waits for a person or is paused."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("agent_id", metavar="AGENT_ID", help="Id of the agent.")
        parser.add_argument("--instruction", default="", help="What the agent should do.")
        parser.add_argument("--issue", metavar="ISSUE_ID", help="An issue of the agent's project to work on.")
        parser.add_argument("--actor", metavar="USERNAME", help="User recorded as the requester (default: none).")
        parser.add_argument("--idempotency-key", help="Repeating a key returns the run it created first.")
        parser.add_argument("--wait", action="store_true", help="Follow the run's events, printing its steps.")
        parser.add_argument("--timeout", type=float, default=600.0, help="Seconds --wait waits at most (600).")
        parser.add_argument("--dry-run", action="store_true", help="Check the run can be queued, then roll it back.")

    def handle(self, *args, **options) -> None:
        agent = get_agent(options["agent_id"])
        issue = None
        if options["issue"]:
            issue = Issue.objects.filter(pk=_as_uuid(options["issue"]), project=agent.project_id).first()
            if issue is None:
                raise CommandError(f"No issue {options['issue']} in the agent's project.")
        try:
            with dry_run_atomic(options["dry_run"]):
                run, created = run_create(
                    agent=agent, instruction=options["instruction"], issue=issue, actor=get_user(options["actor"]),
                    request_id=options["idempotency_key"] or None,
                )
        except SERVICE_ERRORS as exc:
            raise CommandError(f"Cannot run '{agent.name}': {describe_error(exc)}") from exc
        if options["dry_run"]:
            self.stdout.write("Dry run: the run could be queued; nothing was changed.")
            return
        verb = "Queued" if created else "Already queued (same idempotency key)"
        self.stdout.write(self.style.SUCCESS(f"{verb}: run {run.pk} of '{agent.name}'."))
        if options["wait"]:
            self.follow(run, timeout=options["timeout"], verbosity=options["verbosity"])

    def follow(self, run: AgentRun, *, timeout: float, verbosity: int) -> None:
        """Print the run's steps as they are recorded, from its event stream (``agents.events.streams``), until it
        settles (or ``timeout`` seconds pass)."""
        deadline = time.monotonic() + timeout
        cursor = events.head()  # before reading the run: nothing recorded after this look is missed
        run.refresh_from_db()
        shown = 0
        for step in run.steps.order_by("index"):
            shown = step.index + 1
            self._step(step.index, step.kind, step.name, step.prompt_tokens, step.completion_tokens, verbosity)
        project_id = run.agent.project_id
        if run.status not in SETTLED:
            stream = sync_stream(event_stream(run_id=run.pk, project_id=project_id, cursor=cursor,
                                              keepalive=min(1.0, timeout)))
            try:
                for chunk in stream:
                    event, data = _parse(chunk)
                    if event == EventType.RUN_STEP and data["index"] >= shown:
                        shown = data["index"] + 1
                        self._step(data["index"], data["kind"], data["name"], data["prompt_tokens"],
                                   data["completion_tokens"], verbosity)
                    elif event is not None and event.startswith("run.") and event[4:] in SETTLED:
                        break
                    if time.monotonic() > deadline:
                        run.refresh_from_db()
                        raise CommandError(
                            f"Run {run.pk} is still {run.status} after {timeout:g} s (is a worker running?).")
            finally:
                stream.close()
        run.refresh_from_db()
        summary = f"Run {run.pk} {run.status}: {run.steps_completed} steps, {run.tokens_used} tokens, {run.cost} USD."
        if run.status == "succeeded":
            self.stdout.write(self.style.SUCCESS(summary))
            if run.result and verbosity >= 1:
                self.stdout.write(str(run.result.get("message", run.result)))
        elif run.status in ("waiting", "paused"):
            pending = ", ".join(f"{r.kind} {r.tool_name} ({r.pk})" for r in run.requests.filter(status="pending"))
            self.stdout.write(self.style.WARNING(summary + (f" Waiting for: {pending}." if pending else "")))
        else:
            raise CommandError(f"{summary} {run.error_code}: {run.error_message}")

    def _step(self, index: int, kind: str, name: str, prompt: int, completion: int, verbosity: int) -> None:
        if verbosity >= 1:
            usage = f" {prompt}+{completion} tokens" if kind == "llm_call" else ""
            self.stdout.write(f"  step {index} {kind} {name}{usage}")


def _parse(chunk: bytes) -> tuple[str | None, dict]:
    """``(event type, the event's data)`` of one SSE frame (``(None, {})`` for a comment)."""
    event, data = None, {}
    for line in chunk.decode().splitlines():
        name, _, value = line.partition(": ")
        if name == "event":
            event = value
        elif name == "data":
            data = json.loads(value).get("data", {})
    return event, data
