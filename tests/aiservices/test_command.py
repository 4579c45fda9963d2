"""``manage.py refine_prompt``."""

from __future__ import annotations

import io
import json

import pytest
import responses
from django.core.management import call_command
from django.core.management.base import CommandError

from aiservices.models import AIServiceCall
from aiservices.tools.refine_prompt import RefinePromptTool

from .conftest import REFINED, TEMPLATE, TEMPLATE_JSON, answer_agenta

pytestmark = pytest.mark.django_db


@pytest.fixture
def template_file(tmp_path):
    path = tmp_path / "template.json"
    path.write_text(TEMPLATE_JSON, encoding="utf-8")
    return str(path)


def run(*args, **options):
    out, err = io.StringIO(), io.StringIO()
    call_command("refine_prompt", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def test_prints_the_refined_template_and_records_the_call(agenta, upstream, template_file):
    answer_agenta(upstream, agenta)
    out, err = run("--file", template_file, "--guidelines", "Be precise.", "--context", "FAQ", verbosity=2)
    assert json.loads(out) == {**TEMPLATE, "messages": REFINED["messages"]}
    assert "Refined: Made the system message precise." in err
    assert "Trace id trace-agenta-1" in err
    sent = json.loads(upstream.calls[0].request.body)["inputs"]
    assert (sent["__ag_guidelines"], sent["__ag_context"]) == ("Be precise.", "FAQ")
    call = AIServiceCall.objects.get()
    assert (call.user, call.outcome, call.trace_id) == (None, "ok", "trace-agenta-1")


def test_verbosity_zero_prints_only_the_json(agenta, upstream, template_file):
    answer_agenta(upstream, agenta)
    out, err = run("--file", template_file, verbosity=0)
    assert json.loads(out)["messages"] == REFINED["messages"]
    assert err == ""


def test_an_upstream_error_exits_non_zero(agenta, upstream, template_file):
    upstream.add(responses.POST, agenta, body="nope", status=500)
    with pytest.raises(CommandError, match=r"The AI service failed \(HTTP 500\)\. \(trace id [0-9a-f]{32}\)"):
        run("--file", template_file)
    assert AIServiceCall.objects.get().outcome == "tool_error"


def test_a_rejected_refinement_exits_non_zero(agenta, upstream, template_file):
    answer_agenta(upstream, agenta, {"messages": [{"role": "system", "content": "x {{country}}"}]})
    with pytest.raises(CommandError, match="has 1 messages; the original has 2"):
        run("--file", template_file)


def test_an_invalid_template_lists_each_problem(agenta, upstream, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"messages": [{"role": "bot", "content": 1}]}))
    with pytest.raises(CommandError) as excinfo:
        run("--file", str(path))
    assert str(excinfo.value) == (
        "Invalid arguments:\n"
        "  prompt_template_json.messages.0.content: Must be a string.\n"
        "  prompt_template_json.messages.0.role: 'bot' is not one of: system, developer, user, assistant."
    )
    assert not upstream.calls


def test_disabled_and_missing_file_exit_non_zero(disabled, template_file, tmp_path):
    with pytest.raises(CommandError, match="AI services are disabled"):
        run("--file", template_file)
    with pytest.raises(CommandError, match="Cannot read"):
        run("--file", str(tmp_path / "missing.json"))


def test_dry_run_checks_without_calling_or_recording(agenta, upstream, template_file):
    out, _ = run("--file", template_file, "--dry-run")
    assert "Template OK: 2 messages, variables: {{country}}, {{question}}" in out
    assert "Would call the 'agenta' provider at https://agenta.test/api." in out
    assert "Dry run: nothing was sent or recorded." in out
    assert not upstream.calls
    assert not AIServiceCall.objects.exists()


def test_dry_run_fails_when_disabled(disabled, template_file):
    with pytest.raises(CommandError, match="AI services are disabled; missing: AI_SERVICES_API_URL"):
        run("--file", template_file, "--dry-run")


def test_a_template_nested_too_deeply_is_an_error_and_recorded(agenta, upstream, tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 50_000 + "]" * 50_000)
    with pytest.raises(CommandError) as excinfo:
        run("--file", str(path))
    assert str(excinfo.value) == (
        "Invalid arguments:\n  prompt_template_json: Nested too deeply: at most 64 levels of objects and lists."
    )
    assert not upstream.calls
    record = AIServiceCall.objects.get()
    assert (record.outcome, record.error_code) == ("rejected", "invalid_arguments")
    with pytest.raises(CommandError, match="Nested too deeply"):
        run("--file", str(path), "--dry-run")
    assert AIServiceCall.objects.count() == 1


def test_a_defect_is_an_error_and_recorded(agenta, upstream, template_file, monkeypatch):
    def broken(self, arguments, problems):
        raise RuntimeError("defect")

    monkeypatch.setattr(RefinePromptTool, "check_arguments", broken)
    with pytest.raises(CommandError, match=r"The call failed unexpectedly\. \(trace id [0-9a-f]{32}\)"):
        run("--file", template_file)
    assert AIServiceCall.objects.get().error_code == "internal_error"
