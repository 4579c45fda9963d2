"""Choices for the AI services app."""

from django.db import models


class CallOutcome(models.TextChoices):
    """How one tool call ended (``AIServiceCall.outcome``).

    ``ok``: the tool returned a result. ``tool_error``: the tool ran but failed (upstream timeout,
    bad answer, output that broke the template rules); the API answered 200 with ``isError: true``.
    ``rejected``: refused before the tool ran (disabled, unknown tool, invalid arguments, rate limit).
    """

    OK = "ok", "OK"
    TOOL_ERROR = "tool_error", "Tool error"
    REJECTED = "rejected", "Rejected"


class Provider(models.TextChoices):
    """Upstream LLM services the tools can call (``AI_SERVICES_PROVIDER``)."""

    AGENTA = "agenta", "Agenta deployment"
    OPENAI = "openai", "OpenAI-compatible Chat Completions"
    OFFLINE = "offline", "Offline stand-in (scripted, no LLM)"
