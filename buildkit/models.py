"""The build kit's tables.

Templates themselves are ``agents.AgentType`` revisions: ``AgentTemplate`` is a proxy of
``AgentType`` so the admin can show agent types as templates, with their playground page, under
this app. ``PlaygroundRun`` keeps what a playground run answered, so that repeating its
``Idempotency-Key`` answers the same.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from agents.models import AgentInstance, AgentType, AgentTypeRevision


class AgentTemplate(AgentType):
    """An agent type seen as its template: its revisions, the playground and the build kit."""

    class Meta:
        proxy = True
        verbose_name = "agent template"
        verbose_name_plural = "agent templates"


class TemplateSource(models.TextChoices):
    """Where a playground run's draft came from."""

    DRAFT = "draft", "draft sent with the run"
    REVISION = "revision", "latest committed revision"


class PlaygroundRun(models.Model):
    """One playground run: the playground agent it spawned and what the run answered about it.

    The agent holds the effective template it was spawned with (``effective_template``) and the
    revision the draft was based on (``agent_type_revision``); this row adds what only the run
    knew: whether the build kit was on, where the draft came from, the user values the kit
    overrode and the documents the embeds referenced. Written in the same transaction as the
    spawn, never changed afterwards.

    Attributes:
        agent: the playground agent (``is_playground`` true); the row goes with it.
        build_kit: whether the build-kit overlay was applied.
        template_source: ``draft`` or ``revision`` (``TemplateSource``).
        overrides: ``[{"path", "user_value", "kit_value"}]`` (``overlay.apply_overlay``).
        references_used: ``[{"slug", "version", "source"}]`` (``embed.Resolution``).
        created_at: when the run happened.
    """

    agent = models.OneToOneField(
        AgentInstance, primary_key=True, on_delete=models.CASCADE, related_name="playground_run"
    )
    build_kit = models.BooleanField()
    template_source = models.CharField(max_length=20, choices=TemplateSource.choices)
    overrides = models.JSONField(default=list, blank=True)
    references_used = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    #: True on the object a replayed request gets back (not stored).
    replayed = False

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Playground run of {self.agent_id}"

    @property
    def effective(self) -> dict[str, Any] | None:
        """The template the agent was spawned with (draft + kit, embeds resolved)."""
        return self.agent.effective_template

    @property
    def revision(self) -> AgentTypeRevision | None:
        """The latest committed revision when the run happened (the draft's base), or ``None``."""
        return self.agent.agent_type_revision
