"""BROWSER TEST: the live admin in a real headless Chromium (``tests/browser.py``) against the real ASGI server of the
Procfile (gunicorn with uvicorn workers, ``tests/live.py``), PostgreSQL and Redis.

A run's page is opened and left alone while the run changes in this process (a person's decision, a step, the text
of an LLM call, a cancel): the page shows each change without a reload, and what a person typed into the answer form
of a pending request stays there, in the same element, with the focus. The index and the runs list show a new run
waiting for a person by themselves.

With ``SCREENSHOT_DIR`` set, the run page is saved there while an LLM call streams.

It needs Debian's ``chromium``: without it the test fails (``BrowserMissing``), it is never skipped; ``.ci/run``
installs the package when it is missing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agents.choices import AgentStatus as S
from agents.choices import RunRequestKind, RunStatus, StepKind
from agents.events.publish import publish_delta
from agents.models import AgentRun, AgentRunRequest
from agents.runtime import services as runtime
from agents.runtime.trace import step_record
from tests.browser import Browser
from tests.factories import AgentTypeFactory, UserFactory, agent_in_status
from tests.live import Gunicorn
from tests.runtime.harness import database_url

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCHEMA = {"type": "object", "required": ["branch"], "properties": {"branch": {"type": "string", "title": "Branch"}}}
#: How long a change may take to show (generous: the machine is shared); the latency itself is measured, not
#: asserted (``benchmarks/bench_live_admin.py``).
SHOWS_WITHIN = 10.0


@pytest.fixture
def server(tmp_path):
    web = Gunicorn({"DATABASE_URL": database_url(settings.DATABASES["default"]), "REDIS_URL": settings.REDIS_URL,
                    "CELERY_BROKER_URL": settings.CELERY_BROKER_URL}, asgi=True, log_dir=tmp_path)
    web.start()
    yield web
    web.stop()


@pytest.fixture
def browser():
    with Browser() as chromium:
        yield chromium


def logged_in(browser: Browser, server: Gunicorn, user) -> str:
    """Log ``browser`` in as ``user`` (a session cookie); returns the server's base URL."""
    client = Client()
    client.force_login(user)
    base = f"http://127.0.0.1:{server.port}"
    browser.set_cookie(name=settings.SESSION_COOKIE_NAME, value=client.cookies[settings.SESSION_COOKIE_NAME].value,
                       url=base)
    return base


def waiting_run(project, *, approvals: int = 1, inputs: int = 1) -> tuple[AgentRun, list[AgentRunRequest]]:
    agent = agent_in_status(S.WAITING, project=project, agent_type=AgentTypeFactory(handler="builder"))
    run = AgentRun.objects.create(agent=agent, instruction="Release 2.0", status=RunStatus.WAITING,
                                  started_at=timezone.now())
    requests = [AgentRunRequest.objects.create(run=run, kind=RunRequestKind.APPROVAL, tool_name="write_context",
                                               arguments={"name": "notes"}) for _ in range(approvals)]
    requests += [AgentRunRequest.objects.create(run=run, kind=RunRequestKind.INPUT, tool_name="request_input",
                                                message="Which branch?", requested_schema=SCHEMA)
                 for _ in range(inputs)]
    return run, requests


def wait_live(browser: Browser) -> None:
    """Until the page's stream is open and the refresh its opening triggers is done."""
    browser.wait_for("document.querySelector('.live-status[data-state=open]') !== null")
    browser.wait_for("document.querySelectorAll('.htmx-request').length === 0")
    time.sleep(0.3)
    browser.wait_for("document.querySelectorAll('.htmx-request').length === 0")


def test_a_run_page_follows_the_run_and_keeps_what_is_being_typed(server, browser, project):
    person = UserFactory(is_staff=True, is_superuser=True)
    run, (approval, question) = waiting_run(project)
    base = logged_in(browser, server, person)
    browser.goto(f"{base}{reverse('admin:agents_agentrun_change', args=[run.pk])}")
    wait_live(browser)
    browser.evaluate("window.__samePage = true")

    # Someone starts answering the input request, and is still typing (the field keeps the focus).
    field = "document.querySelector('[name=content-branch]')"
    browser.evaluate(f"{field}.focus(); {field}.__typedHere = true")
    browser.type_text("release/2.")

    # Meanwhile another person approves the other request: that block goes, the trace gets the decision's step.
    runtime.run_request_decide(approval, decision="approve", actor=person)
    browser.wait_for(f"!document.getElementById('run-request-{approval.pk}')", timeout=SHOWS_WITHIN)
    browser.wait_for("document.getElementById('step-0') !== null", timeout=SHOWS_WITHIN)
    browser.wait_for("document.querySelector('#run-requests') !== null", timeout=SHOWS_WITHIN)
    browser.type_text("0")
    assert browser.evaluate(f"{field}.value") == "release/2.0"
    assert browser.evaluate(f"{field}.__typedHere === true")  # the same element: its block was not rendered again
    assert browser.evaluate("document.activeElement.name") == "content-branch"
    assert browser.evaluate("document.querySelector('#run-requests').textContent.includes('Approved')")
    assert browser.evaluate("document.querySelector('#run-summary').textContent.includes('1 step')")

    # An LLM call streams: its text appears as it comes, and goes once the step is recorded.
    for text in ("Deploying ", "release/2.0 ", "now."):
        publish_delta(run_id=run.pk, project_id=project.pk,
                      data={"run_id": str(run.pk), "agent_id": str(run.agent_id), "index": 1, "text": text})
    browser.wait_for("document.querySelector('.run-llm-live-text').textContent === 'Deploying release/2.0 now.'",
                     timeout=SHOWS_WITHIN)
    assert browser.evaluate("document.getElementById('run-llm-live').hidden") is False
    if os.environ.get("SCREENSHOT_DIR"):  # to look at the page as it streams
        browser.screenshot(Path(os.environ["SCREENSHOT_DIR"]) / "run-page-streaming.png")
    step_record(run.pk, kind=StepKind.LLM_CALL, name="model", prompt_tokens=10, completion_tokens=4,
                agent_id=run.agent_id)
    browser.wait_for("document.getElementById('step-1') !== null", timeout=SHOWS_WITHIN)
    browser.wait_for("document.getElementById('run-llm-live').hidden", timeout=SHOWS_WITHIN)
    assert browser.evaluate(f"{field}.value") == "release/2.0"

    # The run is cancelled elsewhere: the page says so, drops the form, and stops listening.
    runtime.run_cancel(AgentRun.objects.get(pk=run.pk), actor=person)
    browser.wait_for("document.querySelector('#run-summary .run-status-cancelled') !== null", timeout=SHOWS_WITHIN)
    browser.wait_for(f"!document.getElementById('run-request-{question.pk}-answer')", timeout=SHOWS_WITHIN)
    browser.wait_for("document.querySelector('.live-status').dataset.state === 'closed'", timeout=SHOWS_WITHIN)
    assert not browser.evaluate("document.querySelector('#run-summary').textContent.includes('Cancel run')")
    assert browser.evaluate("window.__samePage === true")  # never reloaded


def running_run(project) -> AgentRun:
    agent = agent_in_status(S.WORKING, project=project, agent_type=AgentTypeFactory(handler="builder"))
    return AgentRun.objects.create(agent=agent, instruction="Release 2.1", status=RunStatus.RUNNING,
                                   started_at=timezone.now())


@pytest.mark.parametrize("page", ["admin:index", "admin:agents_agentrun_changelist"])
def test_the_index_and_the_runs_list_show_a_run_that_starts_waiting(server, browser, project, page):
    person = UserFactory(is_staff=True, is_superuser=True)
    run = running_run(project)
    base = logged_in(browser, server, person)
    browser.goto(f"{base}{reverse(page)}")
    wait_live(browser)
    browser.evaluate("window.__samePage = true")
    waiting = "document.querySelector('#waiting-for-you, #result_list').innerHTML"
    assert "write_context" not in browser.evaluate(waiting)

    # The worker's run asks for an approval: the run is waiting, the request is pending.
    runtime.run_wait(run, kind=RunRequestKind.APPROVAL, tool_name="write_context", arguments={"name": "plan"})
    browser.wait_for(f"{waiting}.includes('write_context')", timeout=SHOWS_WITHIN)
    assert browser.evaluate("window.__samePage === true")
    if page == "admin:index":  # each part fetches itself: the counts may arrive a moment after the list
        counts = "JSON.stringify([...document.querySelectorAll('.run-count-number')].map(e => e.textContent))"
        expected = '["0","0","1","0"]'  # queued, running, waiting, paused
        browser.wait_for(f"{counts} === '{expected}'", timeout=SHOWS_WITHIN)


def test_the_runs_list_holds_still_while_runs_are_selected(server, browser, project):
    person = UserFactory(is_staff=True, is_superuser=True)
    run = running_run(project)
    base = logged_in(browser, server, person)
    browser.goto(f"{base}{reverse('admin:agents_agentrun_changelist')}")
    wait_live(browser)
    rows = "document.getElementById('result_list').innerHTML"
    box = f"document.querySelector('input.action-select[value=\"{run.pk}\"]')"
    browser.evaluate(f"{box}.click()")
    assert browser.evaluate("document.querySelector('span.action-counter').textContent") == "1 of 1 selected"

    runtime.run_wait(run, kind=RunRequestKind.APPROVAL, tool_name="write_context", arguments={"name": "plan"})
    browser.wait_for("document.getElementById('live-run-results').dataset.behind === 'true'", timeout=SHOWS_WITHIN)
    assert "write_context" not in browser.evaluate(rows) and browser.evaluate(f"{box}.checked")

    browser.evaluate(f"{box}.click()")  # the selection is cleared: the list catches up
    browser.wait_for(f"{rows}.includes('write_context')", timeout=SHOWS_WITHIN)
    browser.evaluate(f"{box}.click()")  # and the refreshed rows still select
    assert browser.evaluate("document.querySelector('span.action-counter').textContent") == "1 of 1 selected"
    assert browser.evaluate(f"{box}.closest('tr').classList.contains('selected')")
