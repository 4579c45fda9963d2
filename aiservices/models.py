"""The record of every AI tool call, and the permission that gates the tools."""

from __future__ import annotations

import uuid

from django.conf import settings
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
