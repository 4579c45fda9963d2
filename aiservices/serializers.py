"""Wire shapes of the AI services API (agenta-contracts.md A4/A5; camelCase keys as in MCP)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


@extend_schema_field({"type": "object", "additionalProperties": True})
class JSONObjectField(serializers.JSONField):
    """Any JSON value, documented as an object (the tool's input schema judges it)."""


class ToolDefinitionSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="Namespaced tool name, e.g. tools.syndarix.api.refine_prompt.")
    title = serializers.CharField()
    description = serializers.CharField()
    inputSchema = JSONObjectField(help_text="JSON Schema of `arguments`.")  # noqa: N815 (wire name)
    outputSchema = JSONObjectField(help_text="JSON Schema of `structuredContent`.")  # noqa: N815


class StatusSerializer(serializers.Serializer):
    enabled = serializers.BooleanField(help_text="False when the upstream is not configured.")
    tools = ToolDefinitionSerializer(many=True, help_text="Tools the caller may call (empty without permission).")


class ToolCallRequestSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, help_text="The tool's name (see `status`).")
    arguments = JSONObjectField(required=False, default=dict, help_text="Arguments per the tool's inputSchema.")


class TextContentSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["text"])
    text = serializers.CharField()


class ToolCallMetaSerializer(serializers.Serializer):
    trace_id = serializers.CharField(help_text="The upstream's trace id, else the id of this request.")


class ToolCallResponseSerializer(serializers.Serializer):
    """``{"content": [{"type": "text", "text"}], "structuredContent"?, "isError", "meta"?: {"trace_id"}}``.

    Keys whose value is null are left out.
    """

    content = TextContentSerializer(many=True)
    structuredContent = JSONObjectField(  # noqa: N815 (wire name)
        required=False, help_text="The tool's output per its outputSchema; absent on error."
    )
    isError = serializers.BooleanField(help_text="True when the tool ran but failed.")  # noqa: N815
    meta = ToolCallMetaSerializer(required=False)

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)
        return {key: value for key, value in data.items() if value is not None}


