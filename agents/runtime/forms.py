"""Forms of the runs admin: queue a run, decide an approval, answer an input or connection request.

They only read and check input; the admin views hand the cleaned data to ``agents.runtime.services``
(which validates again and owns every rule).
"""

from __future__ import annotations

import uuid

from django import forms
from django.core.exceptions import ValidationError

from projects.models import Issue

from ..forms import PrettyJSONField
from ..models import AgentInstance
from .services import INSTRUCTION_MAX_LENGTH


class IssueChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Issue) -> str:
        return f"{obj.title} ({obj.get_status_display().lower()})"


class RunCreateForm(forms.Form):
    """The "Run…" page of an agent (``run_create``): an instruction and/or one of the project's issues.

    ``request_id`` is an idempotency key made when the page is shown, so submitting the form twice
    queues one run.
    """

    instruction = forms.CharField(
        required=False,
        max_length=INSTRUCTION_MAX_LENGTH,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80, "class": "vLargeTextField"}),
        help_text="What the agent should do. Optional when an issue is chosen.",
    )
    issue = IssueChoiceField(
        queryset=Issue.objects.none(),
        required=False,
        help_text="An issue of the agent's project; the agent becomes its assignee.",
    )
    request_id = forms.CharField(widget=forms.HiddenInput, max_length=200)

    def __init__(self, *args, agent: AgentInstance, **kwargs) -> None:
        kwargs.setdefault("initial", {}).setdefault("request_id", f"admin-{uuid.uuid4()}")
        super().__init__(*args, **kwargs)
        self.agent = agent
        self.fields["issue"].queryset = Issue.objects.filter(project_id=agent.project_id).order_by("status", "title")

    def clean(self) -> dict:
        cleaned = super().clean()
        if not (cleaned.get("instruction") or "").strip() and cleaned.get("issue") is None and not self.errors:
            raise ValidationError("Write an instruction, choose an issue, or both.")
        return cleaned


class RunDecisionForm(forms.Form):
    """Approve or deny a pending approval (``run_request_decide``), with an optional reason."""

    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("deny", "Deny")])
    reason = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Optional; a denial's reason is what the model is told.",
    )


class RunAnswerForm(forms.Form):
    """Answer a pending input or connection request (``run_request_answer``).

    ``action`` is ``accept`` (send ``content``, a JSON object checked against the request's schema by the
    service) or ``decline``.
    """

    action = forms.ChoiceField(choices=[("accept", "Send answer"), ("decline", "Decline")])
    content = PrettyJSONField(
        required=False,
        initial=dict,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 70, "class": "vLargeTextField"}),
        help_text="A JSON object that matches the requested schema.",
    )

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("action") == "decline":
            self._errors.pop("content", None)  # a decline sends no content: whatever is in the box does not matter
            cleaned["content"] = None
        elif "content" in cleaned and not isinstance(cleaned["content"], dict):
            self.add_error("content", "Must be a JSON object.")
        return cleaned
