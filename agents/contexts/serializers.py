"""Serializers of the shared-context API (``/api/v1/projects/{project_id}/contexts``).

Request serializers only shape and type the input; the limits (JSON object, size, NUL, depth) and
every business rule live in ``agents.contexts.services`` so the API, the admin and the agents share them.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from syndarix.api.schema import JsonPatchOperationSerializer

from ..models import AgentContext, AgentContextVersion, AgentInstance
from .services import MAX_VERSION, NAME_MAX_LENGTH, WRITE_MODES

JSON_OBJECT_SCHEMA = {"type": "object", "additionalProperties": True}


@extend_schema_field(JSON_OBJECT_SCHEMA)
class ContextDataField(serializers.Field):
    """A context's JSON object, passed through untouched.

    The parsed request value goes straight to the service, which checks it without recursion
    (``agents.contexts.validate_context_data``); DRF's ``JSONField`` would re-serialize it
    recursively first.
    """

    def to_internal_value(self, data: Any) -> Any:
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class ContextAuthorSerializer(serializers.Serializer):
    """Who wrote a version: a user or an agent (``null``: the system, or a deleted writer)."""

    type = serializers.ChoiceField(choices=["user", "agent"])
    id = serializers.CharField()
    name = serializers.CharField()


class AgentContextSerializer(serializers.ModelSerializer):
    """A context without its data (lists). Counts are of retained versions."""

    project_id = serializers.UUIDField(read_only=True)
    instance_id = serializers.UUIDField(read_only=True, allow_null=True)
    versions_count = serializers.IntegerField(read_only=True)
    pinned_count = serializers.IntegerField(read_only=True)
    oldest_version = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = AgentContext
        fields = [
            "id",
            "project_id",
            "instance_id",
            "name",
            "current_version",
            "versions_count",
            "pinned_count",
            "oldest_version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class AgentContextDetailSerializer(AgentContextSerializer):
    """A context with the data of its current version."""

    data = ContextDataField(source="current_data", read_only=True)

    class Meta(AgentContextSerializer.Meta):
        fields = [*AgentContextSerializer.Meta.fields, "data"]
        read_only_fields = fields


class AgentContextCreateSerializer(serializers.Serializer):
    """``POST /contexts``: ``data`` (a JSON object, default ``{}``) becomes version 1."""

    name = serializers.CharField(max_length=NAME_MAX_LENGTH)
    instance_id = serializers.PrimaryKeyRelatedField(
        queryset=AgentInstance.objects.none(), required=False, allow_null=True, default=None,
        help_text="Agent of this project owning the context; omit or null for a context shared by all agents.",
    )
    data = ContextDataField(required=False, default=dict)
    change_description = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

    def __init__(self, *args, project=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if project is not None:
            self.fields["instance_id"].queryset = AgentInstance.objects.filter(project=project)


class ContextWriteSerializer(serializers.Serializer):
    """``POST /contexts/{id}/write``."""

    data = ContextDataField(help_text="The new data (replace) or an RFC 7396 merge patch (merge).")
    mode = serializers.ChoiceField(choices=list(WRITE_MODES), default="replace")
    expected_version = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=0, max_value=MAX_VERSION,
        help_text="Refuse with 409 version_conflict unless the context is still at this version.",
    )
    change_description = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class ContextRollbackSerializer(serializers.Serializer):
    """``POST /contexts/{id}/rollback``."""

    target_version = serializers.IntegerField(min_value=1, max_value=MAX_VERSION)
    change_description = serializers.CharField(required=False, allow_null=True, default=None, max_length=2000)


class ContextVersionsQuerySerializer(serializers.Serializer):
    include_data = serializers.BooleanField(required=False, default=False)


class ContextDiffQuerySerializer(serializers.Serializer):
    """``?from=&to=`` (``from`` is a Python keyword, so the field is added by name)."""

    to = serializers.IntegerField(min_value=1, max_value=MAX_VERSION)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"] = serializers.IntegerField(min_value=1, max_value=MAX_VERSION)
        return {"from": fields.pop("from"), **fields}


class AgentContextVersionSerializer(serializers.ModelSerializer):
    """A version without its data (history listings, pin/unpin)."""

    context_id = serializers.UUIDField(read_only=True)
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = AgentContextVersion
        fields = [
            "context_id",
            "version",
            "change_description",
            "created_by",
            "restored_from",
            "pinned",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(ContextAuthorSerializer(allow_null=True))
    def get_created_by(self, obj: AgentContextVersion) -> dict[str, str] | None:
        if obj.created_by_user_id:
            return {"type": "user", "id": str(obj.created_by_user_id), "name": obj.created_by_user.get_username()}
        if obj.created_by_agent_id:
            return {"type": "agent", "id": str(obj.created_by_agent_id), "name": obj.created_by_agent.name}
        return None


class AgentContextVersionDetailSerializer(AgentContextVersionSerializer):
    """A version with its data."""

    data = ContextDataField(read_only=True)

    class Meta(AgentContextVersionSerializer.Meta):
        fields = [*AgentContextVersionSerializer.Meta.fields, "data"]
        read_only_fields = fields


class AgentContextVersionListItemSerializer(AgentContextVersionSerializer):
    """The schema of one item of ``GET /contexts/{id}/versions``: ``data`` is there only with
    ``include_data=true`` (the view answers with ``AgentContextVersionSerializer`` or the detail serializer)."""

    data = ContextDataField(required=False, help_text="The version's data; only with `include_data=true`.")

    class Meta(AgentContextVersionSerializer.Meta):
        fields = [*AgentContextVersionSerializer.Meta.fields, "data"]
        read_only_fields = AgentContextVersionSerializer.Meta.fields


class ContextDiffSerializer(serializers.Serializer):
    """``GET /contexts/{id}/diff``: the JSON Patch turning version ``from`` into version ``to``."""

    to = serializers.IntegerField()
    patch = JsonPatchOperationSerializer(many=True)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        return {"from": serializers.IntegerField(), **fields}


