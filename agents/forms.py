"""Forms of the agents admin: spawning, termination, and the agent change form.

They only validate input; the admin views hand the cleaned data to ``agents.services``.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import ValidationError
from django.forms.fields import InvalidJSONInput

from projects.models import Project
from syndarix.exceptions import InvalidInput

from .choices import TerminationReason
from .models import AgentInstance, AgentType, check_storable_json


def config_error_messages(error: ValidationError) -> list[str]:
    """Messages of an ``AgentType.validate_config`` error, one per violation, prefixed by JSON path.

    The model keys errors by path (``config``, ``config.retries``); each becomes
    ``retries: <message>`` (or just ``<message>`` for the object itself), so a form shows every
    schema violation and where it is.
    """
    items = error.message_dict.items() if hasattr(error, "error_dict") else [("config", error.messages)]
    out = []
    for key, messages in items:
        path = key.removeprefix("config").lstrip(".")
        out.extend(f"{path}: {message}" if path else message for message in messages)
    return out


def storable_json_object(value, *, field: str) -> dict:
    """``value`` (``None`` → ``{}``) if it is a JSON object PostgreSQL can store, else a form ``ValidationError``."""
    value = {} if value is None else value
    if not isinstance(value, dict):
        raise ValidationError("Must be a JSON object.")
    try:
        check_storable_json(value, field=field)
    except InvalidInput as exc:
        raise ValidationError(exc.message, code=exc.code) from exc
    return value


class PrettyJSONField(forms.JSONField):
    """A JSON textarea that shows its value indented, one key per line."""

    def prepare_value(self, value):
        if isinstance(value, InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)


class ProjectChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Project) -> str:
        return f"{obj.workspace.name} / {obj.name}"


class AgentSpawnForm(forms.Form):
    """Input of the admin's "Spawn agent" page (``agents.services.agent_spawn``)."""

    project = ProjectChoiceField(queryset=Project.objects.select_related("workspace"))
    agent_type = forms.ModelChoiceField(
        queryset=AgentType.objects.filter(is_active=True), help_text="Only active agent types can be spawned."
    )
    name = forms.CharField(max_length=200)
    current_task = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2, "cols": 80}))
    config = PrettyJSONField(
        required=False,
        initial=dict,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80, "class": "vLargeTextField"}),
        help_text="A JSON object, checked against the agent type's config schema (listed below).",
    )

    def __init__(self, *args, admin_site=None, projects=None, **kwargs) -> None:
        """``projects``: the projects the user may spawn into (default: all); ``admin_site``: search them with the
        admin's autocomplete (which lists the projects the user sees)."""
        super().__init__(*args, **kwargs)
        if projects is not None:
            self.fields["project"].queryset = projects
        if admin_site is not None:
            # Search projects by name instead of scrolling a select of every project.
            field = self.fields["project"]
            field.widget = AutocompleteSelect(AgentInstance._meta.get_field("project"), admin_site)
            field.widget.choices = field.choices

    def clean_config(self) -> dict:
        return storable_json_object(self.cleaned_data.get("config"), field="config")

    def clean(self) -> dict:
        cleaned = super().clean()
        agent_type, config = cleaned.get("agent_type"), cleaned.get("config")
        if agent_type is not None and config is not None:
            try:
                agent_type.validate_config(config)
            except ValidationError as exc:
                self.add_error("config", config_error_messages(exc))
        return cleaned


class AgentTerminateForm(forms.Form):
    """Why an agent (or a selection of agents) is terminated; both go to ``agent_terminate``."""

    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Recorded in the transition ledger.",
    )
    termination_reason = forms.ChoiceField(
        choices=TerminationReason.choices,
        initial=TerminationReason.USER,
        help_text="Stored on the agent as its termination reason.",
    )


class AgentInstanceForm(forms.ModelForm):
    """The agent change form: the fields ``agent_update`` may change, with ``config`` checked
    against the agent type's schema before anything is saved. ``max_tokens`` / ``max_cost_usd`` are the
    agent's budget (tokens, USD; empty: the agent type's default)."""

    class Meta:
        model = AgentInstance
        fields = (
            "name", "current_task", "config", "short_term_memory", "long_term_memory_ref", "session_id", "max_tokens",
            "max_cost_usd",
        )
        field_classes = {"config": PrettyJSONField, "short_term_memory": PrettyJSONField}
        widgets = {
            "config": forms.Textarea(attrs={"rows": 8, "cols": 60}),
            "short_term_memory": forms.Textarea(attrs={"rows": 12, "cols": 60}),
        }

    def clean_config(self) -> dict:
        config = storable_json_object(self.cleaned_data.get("config"), field="config")
        try:
            self.instance.agent_type.validate_config(config)
        except ValidationError as exc:
            raise ValidationError(config_error_messages(exc)) from exc
        return config

    def clean_max_cost_usd(self):
        value = self.cleaned_data.get("max_cost_usd")
        if value is not None and value < 0:
            raise ValidationError("Must be zero or more.")
        return value

    def clean_short_term_memory(self) -> dict:
        return storable_json_object(self.cleaned_data.get("short_term_memory"), field="short_term_memory")

