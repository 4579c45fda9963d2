"""The build kit owns no tables: templates are ``agents.AgentType`` revisions.

``AgentTemplate`` is a proxy of ``AgentType`` so the admin can show agent types as templates, with
their playground page, under this app.
"""

from __future__ import annotations

from agents.models import AgentType


class AgentTemplate(AgentType):
    """An agent type seen as its template: its revisions, the playground and the build kit."""

    class Meta:
        proxy = True
        verbose_name = "agent template"
        verbose_name_plural = "agent templates"
