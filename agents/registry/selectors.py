"""Reads over the registry of agent classes that need the database: the classes with their synced agent types."""

from __future__ import annotations

from typing import Any

from django.db.models import F

from ..models import AgentType
from .base import AgentRegistry, registry


def agent_class_list(*, agent_registry: AgentRegistry | None = None) -> list[dict[str, Any]]:
    """Definitions of the registered classes, each with ``agent_type_id`` (one query).

    ``agent_type_id`` is the primary key (UUID) of the ``AgentType`` that ``sync_agent_types``
    keeps for the class (``slug == handler ==`` the class slug), or ``None`` before the first sync.
    Sorted by slug.
    """
    definitions = (registry if agent_registry is None else agent_registry).definitions()
    synced = dict(
        AgentType.objects.filter(slug__in=[d["slug"] for d in definitions], handler=F("slug")).values_list("slug", "pk")
    )
    return [{**definition, "agent_type_id": synced.get(definition["slug"])} for definition in definitions]
