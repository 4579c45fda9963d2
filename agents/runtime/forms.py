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


# --- An input request's form, generated from its requestedSchema ------------------------------------------------

#: What a property of a ``requestedSchema`` may say for the generated form (MCP elicitation's primitive schemas).
_COMMON_KEYS = {"type", "title", "description", "default"}
_KEYS_BY_TYPE = {
    "string": _COMMON_KEYS | {"minLength", "maxLength", "format", "enum", "enumNames"},
    "number": _COMMON_KEYS | {"minimum", "maximum"},
    "integer": _COMMON_KEYS | {"minimum", "maximum"},
    "boolean": _COMMON_KEYS,
}
_STRING_FORMATS = {"email", "uri", "date", "date-time"}
_TOP_LEVEL_KEYS = {"type", "properties", "required", "title", "description", "additionalProperties", "$schema"}


def _property_type(prop) -> str | None:
    """The primitive type of a property the generated form can ask for, else ``None``."""
    if not isinstance(prop, dict):
        return None
    kind = prop.get("type", "string" if "enum" in prop else None)
    if kind not in _KEYS_BY_TYPE or set(prop) - _KEYS_BY_TYPE[kind]:
        return None
    if kind == "string":
        if "format" in prop and prop["format"] not in _STRING_FORMATS:
            return None
        enum = prop.get("enum")
        if enum is not None and not (isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum)):
            return None
        names = prop.get("enumNames")
        if names is not None and not (isinstance(names, list) and len(names) == len(enum or [])):
            return None
    return kind


def schema_form_supported(schema) -> bool:
    """Whether ``schema`` is a flat object of primitive properties (string with ``minLength``/``maxLength`` and
    ``format`` email, uri, date or date-time; number or integer with ``minimum``/``maximum``; boolean; an enum of
    strings with optional ``enumNames``; ``title``, ``description``, ``default``; ``required``), so that
    ``RequestedSchemaForm`` can ask for it field by field."""
    if not isinstance(schema, dict) or schema.get("type", "object") != "object" or set(schema) - _TOP_LEVEL_KEYS:
        return False
    properties, required = schema.get("properties") or {}, schema.get("required") or []
    if not isinstance(properties, dict) or not isinstance(required, list):
        return False
    return all(isinstance(name, str) for name in properties) and all(
        _property_type(prop) for prop in properties.values())


class RequestedSchemaForm(forms.Form):
    """An input or connection request's answer, one field per property of its ``requestedSchema`` (check it with
    ``schema_form_supported`` first): text, email, URL, date and date-time inputs, numbers with their bounds, a
    checkbox per boolean, a select per enum (labelled by ``enumNames``); ``required`` properties come first, marked
    and enforced. ``action`` is ``accept`` or ``decline`` (a decline checks nothing). The fields' HTML names carry the
    ``content-`` prefix, so a property may be called ``action``.

    ``content()`` is the JSON object to send: booleans always, other properties when filled in; dates and times as
    ISO 8601 strings. The service validates it against the schema again (``run_request_answer``).
    """

    def __init__(self, *args, schema: dict, **kwargs) -> None:
        super().__init__(*args, prefix="content", **kwargs)
        self.schema = schema
        required = [name for name in schema.get("required") or [] if name in (schema.get("properties") or {})]
        properties = schema.get("properties") or {}
        # The database keeps no order of an object's keys: the required properties come first, in the order of
        # ``required`` (an array), then the others by name.
        for name in [*dict.fromkeys(required), *sorted(set(properties) - set(required))]:
            self.fields[name] = _field(properties[name], required=name in required)

    def add_prefix(self, field_name: str) -> str:
        return field_name if field_name == "action" else super().add_prefix(field_name)

    def full_clean(self) -> None:
        if self.is_bound and self.data.get("action") == "decline":
            self.cleaned_data, self._errors = {"action": "decline"}, forms.utils.ErrorDict()
            return
        super().full_clean()

    def content(self) -> dict | None:
        """The answer as a JSON object (``None`` for a decline)."""
        if self.data.get("action") == "decline":
            return None
        out = {}
        for name, field in self.fields.items():
            value = self.cleaned_data.get(name)
            if isinstance(field, forms.BooleanField):
                out[name] = bool(value)
            elif value not in (None, ""):
                out[name] = value.isoformat() if hasattr(value, "isoformat") else value
        return out

    @property
    def action(self) -> str:
        return "decline" if self.data.get("action") == "decline" else "accept"

    def add_schema_errors(self, messages_by_path: dict[str, list[str]]) -> None:
        """Put the service's schema errors (keyed ``content`` or ``content.<property>``) on their fields."""
        for path, messages in messages_by_path.items():
            name = path.removeprefix("content").lstrip(".").split(".")[0]
            for message in messages:
                self.add_error(name if name in self.fields else None, message)


class _DateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def format_value(self, value):
        return value.strftime("%Y-%m-%dT%H:%M") if hasattr(value, "strftime") else value


def _field(prop: dict, *, required: bool) -> forms.Field:
    """The form field of one ``requestedSchema`` property (see ``RequestedSchemaForm``)."""
    kind = _property_type(prop)
    common = {"label": prop.get("title") or None, "help_text": prop.get("description", ""),
              "initial": prop.get("default")}
    bounds = {"min_value": prop.get("minimum"), "max_value": prop.get("maximum")}
    if kind == "boolean":
        return forms.BooleanField(required=False, **common)
    if kind == "integer":
        return forms.IntegerField(required=required, **bounds, **common)
    if kind == "number":
        return forms.FloatField(required=required, widget=forms.NumberInput(attrs={"step": "any"}), **bounds, **common)
    if "enum" in prop:
        labels = prop.get("enumNames") or prop["enum"]
        choices = list(zip(prop["enum"], labels, strict=True))
        return forms.ChoiceField(required=required, choices=choices if required else [("", "---------"), *choices],
                                 **common)
    length = {"min_length": prop.get("minLength"), "max_length": prop.get("maxLength")}
    fmt = prop.get("format")
    if fmt == "email":
        return forms.EmailField(required=required, **length, **common)
    if fmt == "uri":
        return forms.URLField(required=required, assume_scheme="https", **length, **common)
    if fmt == "date":
        return forms.DateField(required=required, widget=forms.DateInput(attrs={"type": "date"}), **common)
    if fmt == "date-time":
        return forms.DateTimeField(required=required, widget=_DateTimeInput(), **common)
    long_text = (prop.get("maxLength") or 0) > 200
    widget = forms.Textarea(attrs={"rows": 3, "cols": 60}) if long_text else forms.TextInput(attrs={"size": 60})
    return forms.CharField(required=required, strip=False, widget=widget, **length, **common)
