"""Seed what `make fuzz` needs real ids for, and print them as shell assignments (`.ci/fuzz` evaluates them).

The nested routes of runs and contexts answer 404 to any id the fuzzer invents, so without these it never reaches
them. One project of the demo admin holds:

- an agent whose run waits for a person's approval (`FUZZ_RUN_AGENT_ID`, `FUZZ_RUN_ID`, `FUZZ_APPROVAL_ID`): list,
  create and get runs, their steps, the approval;
- an agent whose run waits for input (`FUZZ_INPUT_AGENT_ID`, `FUZZ_INPUT_RUN_ID`): the answer;
- an agent with a queued run (`FUZZ_CANCEL_AGENT_ID`, `FUZZ_CANCEL_RUN_ID`): cancel;
- an agent for pause and resume (`FUZZ_LIFECYCLE_AGENT_ID`), one for PATCH (`FUZZ_PATCHED_AGENT_ID`) and one for
  DELETE (`FUZZ_TERMINATED_AGENT_ID`): the fuzzer also reuses ids it read from responses, and with its own targets
  these operations never terminate the agents above;
- a context with three versions (`FUZZ_CONTEXT_ID`): get, change, versions, diff, write, rollback, pin and unpin;
  and another (`FUZZ_DELETED_CONTEXT_ID`) for DELETE, so deleting cannot take the first away from the others;
- an issue (`FUZZ_ISSUE_ID`) to read and change, and another (`FUZZ_DELETED_ISSUE_ID`) to delete;
- a webhook endpoint of the fuzz workspace with a delivery (`FUZZ_WORKSPACE_ID`, `FUZZ_WEBHOOK_ID`,
  `FUZZ_DELIVERY_ID`): get, change, rotate its secret, list, get and redeliver its deliveries; and another
  (`FUZZ_DELETED_WEBHOOK_ID`) for DELETE. Their target refuses connections, and `make fuzz` runs no worker;
- an empty project to delete (`FUZZ_DELETED_PROJECT_ID`), in a workspace that holds no agents (limit 0), so that
  nothing spawned into it by an id the fuzzer read can make the delete refused.

The waiting runs are set up as the worker leaves them (the run and its agent `waiting`, a pending request), since
`make fuzz` runs no worker. Run with the fuzzer's environment (`DATABASE_URL` ...), after `seed_demo`.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndarix.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.test import override_settings  # noqa: E402

from agents import services  # noqa: E402
from agents.choices import RunRequestKind  # noqa: E402
from agents.contexts import services as contexts  # noqa: E402
from agents.events.models import Event  # noqa: E402
from agents.models import AgentRun, AgentRunRequest, AgentType  # noqa: E402
from agents.runtime import services as runtime  # noqa: E402
from agents.webhooks import services as webhooks  # noqa: E402
from agents.webhooks.choices import DeliveryStatus  # noqa: E402
from agents.webhooks.models import WebhookDelivery  # noqa: E402
from projects.models import Project, Workspace  # noqa: E402
from projects.services import issue_create  # noqa: E402

TEMPLATE = {"llm": {"model": "fuzz"}, "tools": [{"type": "platform", "op": "write_context", "permission": "ask"}]}
INPUT_SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 100}}, "required": ["name"]}


def waiting(agent, kind: str, **request) -> tuple[AgentRun, AgentRunRequest]:
    """A run of ``agent`` waiting for a person, with its pending request."""
    run, _ = runtime.run_create(agent=agent, instruction="fuzz")
    run = runtime.run_claim(run.pk, worker="fuzz")  # as a worker takes it: running, the agent working
    return run, runtime.run_wait(run, kind=kind, tool_call_id="call_1", **request)


def main() -> None:
    admin = get_user_model().objects.get(username="admin")
    workspace = Workspace.objects.create(name="Fuzz", slug="fuzz", max_concurrent_agents=1000)
    project = Project.objects.create(workspace=workspace, owner=admin, name="Fuzz", slug="fuzz")
    agent_type = AgentType.objects.create(name="Fuzz loop", slug="fuzz-loop")
    services.agent_type_commit_revision(agent_type, template=TEMPLATE, author=admin)

    def spawn(name: str):
        return services.agent_spawn(project=project, agent_type=agent_type, name=name, actor=admin)

    runs_agent, input_agent, cancel_agent = spawn("runs"), spawn("input"), spawn("cancel")
    lifecycle_agent, patched_agent, terminated_agent = spawn("lifecycle"), spawn("patched"), spawn("terminated")
    run, approval = waiting(runs_agent, RunRequestKind.APPROVAL, tool_name="write_context",
                            arguments={"name": "notes", "data": {}})
    input_run, _ = waiting(input_agent, RunRequestKind.INPUT, tool_name="request_input", message="Who?",
                           requested_schema=INPUT_SCHEMA, arguments={"message": "Who?"})
    cancel_run, _ = runtime.run_create(agent=cancel_agent, instruction="fuzz")
    context = contexts.context_create(project=project, name="fuzz", data={"n": 1}, actor=admin)
    for n in (2, 3):
        contexts.context_write(context, {"n": n}, actor=admin)
    doomed = contexts.context_create(project=project, name="fuzz-delete", data={}, actor=admin)
    issue, doomed_issue = (issue_create(project=project, title=title) for title in ("Fuzz", "Fuzz, deleted"))
    with override_settings(WEBHOOK_ALLOW_PRIVATE_TARGETS=True):  # a loopback target that refuses connections
        endpoint, doomed_endpoint = (webhooks.webhook_endpoint_create(workspace=workspace, url="http://127.0.0.1:9/")[0]
                                     for _ in range(2))
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, event=Event.objects.filter(project=project).first(),
                                              status=DeliveryStatus.FAILED, attempts=1, last_error="fuzz")
    ids = {
        "FUZZ_WORKSPACE_ID": workspace.pk, "FUZZ_WEBHOOK_ID": endpoint.pk, "FUZZ_DELIVERY_ID": delivery.pk,
        "FUZZ_DELETED_WEBHOOK_ID": doomed_endpoint.pk,
        "FUZZ_PROJECT_ID": project.pk, "FUZZ_RUN_AGENT_ID": runs_agent.pk, "FUZZ_RUN_ID": run.pk,
        "FUZZ_APPROVAL_ID": approval.pk, "FUZZ_INPUT_AGENT_ID": input_agent.pk, "FUZZ_INPUT_RUN_ID": input_run.pk,
        "FUZZ_CANCEL_AGENT_ID": cancel_agent.pk, "FUZZ_CANCEL_RUN_ID": cancel_run.pk,
        "FUZZ_CONTEXT_ID": context.pk, "FUZZ_DELETED_CONTEXT_ID": doomed.pk,
        "FUZZ_LIFECYCLE_AGENT_ID": lifecycle_agent.pk, "FUZZ_PATCHED_AGENT_ID": patched_agent.pk,
        "FUZZ_TERMINATED_AGENT_ID": terminated_agent.pk, "FUZZ_ISSUE_ID": issue.pk,
        "FUZZ_DELETED_ISSUE_ID": doomed_issue.pk,
        "FUZZ_DELETED_PROJECT_ID": Project.objects.create(
            workspace=Workspace.objects.create(name="Fuzz, no agents", slug="fuzz-no-agents", max_concurrent_agents=0),
            owner=admin, name="Fuzz, deleted", slug="fuzz-deleted",
        ).pk,
    }
    for name, value in ids.items():
        print(f"export {name}={shlex.quote(str(value))}")


if __name__ == "__main__":
    main()
