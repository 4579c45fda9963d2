"""Forms of the AI services admin pages."""

from __future__ import annotations

from typing import Any

from django import forms

EXAMPLE_TEMPLATE = """{
  "messages": [
    {"role": "system", "content": "You are a travel assistant for {{country}}."},
    {"role": "user", "content": "{{question}}"}
  ],
  "template_format": "curly",
  "input_keys": ["country", "question"]
}"""


class RefinePromptForm(forms.Form):
    """A prompt template to refine, with optional guidelines and context (the tool's arguments)."""

    template = forms.CharField(
        label="Prompt template (JSON)",
        strip=False,
        widget=forms.Textarea(
            attrs={"rows": 14, "class": "vLargeTextField refine-code", "placeholder": EXAMPLE_TEMPLATE,
                   "spellcheck": "false"}
        ),
        help_text="An object with a non-empty 'messages' list of {role, content}; optionally template_format, "
        "input_keys and llm_config.",
    )
    guidelines = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "class": "vLargeTextField"}),
        help_text="What to improve, e.g. 'make it shorter and more formal'.",
    )
    context = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "class": "vLargeTextField"}),
        help_text="Optional background on how the prompt is used.",
    )

    #: Tool argument → form field.
    FIELDS = {"prompt_template_json": "template", "guidelines": "guidelines", "context": "context"}

    def arguments(self) -> dict[str, Any]:
        """The refine_prompt tool's arguments (optional ones only when filled in)."""
        data = self.cleaned_data
        arguments = {"prompt_template_json": data["template"]}
        for name in ("guidelines", "context"):
            if data.get(name):
                arguments[name] = data[name]
        return arguments

    def add_argument_problems(self, problems: list[tuple[str, str]]) -> None:
        """Show each ``(field, message)`` problem of ``InvalidArguments`` under its form field."""
        for field, message in problems:
            parts = field.split(".")
            argument = parts[1] if len(parts) > 1 and parts[0] == "arguments" else None
            form_field = self.FIELDS.get(argument)
            where = ".".join(parts[2:])
            self.add_error(form_field, f"{where}: {message}" if where else message)
