"""The record of every AI tool call, the permission that gates the tools, and the LLM price table."""

from __future__ import annotations

import uuid
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

from .choices import CallOutcome

#: ``user.has_perm`` name of the permission that allows calling AI tools (superusers have it).
EDIT_WORKFLOWS_PERMISSION = "aiservices.edit_workflows"


class AIServiceCall(models.Model):
    """One call of an AI tool, whatever its outcome (append-only; never edited).

    ``duration_ms`` is wall time in milliseconds from accepting the request to answering it;
    ``tokens`` is the total the upstream reported (``None`` when it reported none); ``trace_id`` is
    the upstream's trace id, else the request id Syndarix generated; ``user`` is ``None`` for calls
    made by management commands.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="ai_service_calls"
    )
    tool = models.CharField(max_length=200, db_index=True)
    outcome = models.CharField(max_length=20, choices=CallOutcome.choices, db_index=True)
    provider = models.CharField(max_length=20, blank=True, help_text="Upstream provider, when the tool called one.")
    duration_ms = models.PositiveIntegerField(default=0, help_text="Milliseconds.")
    trace_id = models.CharField(max_length=200, blank=True, db_index=True)
    tokens = models.PositiveIntegerField(null=True, blank=True, help_text="Total tokens the upstream reported.")
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "AI service call"
        verbose_name_plural = "AI service calls"
        permissions = [("edit_workflows", "Can edit agent workflows and templates")]
        indexes = [models.Index(fields=["user", "-created_at"], name="aiservicecall_user_idx")]

    def __str__(self) -> str:
        return f"{self.tool} ({self.get_outcome_display()}) at {self.created_at:%Y-%m-%d %H:%M:%S}"


class PromptRefinement(AIServiceCall):
    """Admin entry point of the "Refine a prompt" page (a proxy: it adds no table)."""

    class Meta:
        proxy = True
        verbose_name = "Refine a prompt"
        verbose_name_plural = "Refine a prompt"
        default_permissions = ()


#: Cost is rounded to this many decimal places of a USD (the cost columns' precision).
COST_PLACES = Decimal("0.000001")


class ModelPrice(models.Model):
    """The price of one LLM model, per million tokens, in USD (edited in the admin).

    The agent runtime's metered client prices each call with it: ``cost = prompt_tokens ×
    input_usd_per_mtok / 10⁶ + completion_tokens × output_usd_per_mtok / 10⁶``, rounded to 10⁻⁶ USD.
    ``model`` is matched exactly as the upstream reports it in its answer (else as it was asked for).
    """

    model = models.CharField(max_length=200, unique=True)
    input_usd_per_mtok = models.DecimalField(
        max_digits=12, decimal_places=6, validators=[MinValueValidator(0)],
        help_text="USD per million prompt (input) tokens.",
    )
    output_usd_per_mtok = models.DecimalField(
        max_digits=12, decimal_places=6, validators=[MinValueValidator(0)],
        help_text="USD per million completion (output) tokens.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model"]
        verbose_name = "model price"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(input_usd_per_mtok__gte=0, output_usd_per_mtok__gte=0),
                name="model_price_not_negative",
            )
        ]

    def __str__(self) -> str:
        return f"{self.model}: {self.input_usd_per_mtok} / {self.output_usd_per_mtok} USD per Mtok"

    def cost(self, *, prompt_tokens: int, completion_tokens: int) -> Decimal:
        """USD for one call of ``prompt_tokens`` in and ``completion_tokens`` out, rounded to 10⁻⁶."""
        total = (prompt_tokens * self.input_usd_per_mtok + completion_tokens * self.output_usd_per_mtok) / 1_000_000
        return total.quantize(COST_PLACES, rounding=ROUND_HALF_UP)
