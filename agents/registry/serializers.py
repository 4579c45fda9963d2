"""Serializers of the agent-class registry API (read-only)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


@extend_schema_field({"type": "object", "additionalProperties": True, "description": "A JSON Schema."})
class JSONSchemaField(serializers.JSONField):
    """A JSON Schema document (an object)."""


class AgentClassSerializer(serializers.Serializer):
    """A registered agent class (``agents.registry.BaseAgent.definition()``) and its synced type."""

    slug = serializers.SlugField(read_only=True, help_text="Key an agent type names in its handler.")
    name = serializers.CharField(read_only=True)
    description = serializers.CharField(read_only=True)
    capabilities = serializers.ListField(child=serializers.CharField(), read_only=True)
    config_schema = JSONSchemaField(read_only=True, help_text="JSON Schema (draft 2020-12) for instance config.")
    agent_type_id = serializers.UUIDField(
        read_only=True,
        allow_null=True,
        help_text="Agent type synced from this class by sync_agent_types; null until it has run.",
    )

    class Meta:
        fields = ("slug", "name", "description", "capabilities", "config_schema", "agent_type_id")
