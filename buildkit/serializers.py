"""Request and response shapes of the build-kit API (explicit fields; server-owned ones read-only)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents.models import AgentInstance, AgentTypeRevision
from syndarix.api.schema import JsonPatchOperationSerializer

from .embed import ERROR_POLICIES, MAX_DEPTH, MAX_EMBEDS, POLICY_EXCEPTION, SOURCE_AGENT_TYPE, SOURCE_STATIC
from .models import TemplateSource
from .platform_ops import PERMISSIONS


class TemplateField(serializers.JSONField):
    """A JSON object holding a ``parameters.agent`` template (validated in depth by the service)."""

    default_error_messages = {"not_object": "Must be a JSON object."}

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            self.fail("not_object")
        return value


TemplateField = extend_schema_field({"type": "object", "additionalProperties": True,
                                     "description": "A parameters.agent template."})(TemplateField)


class AgentTypeRevisionSummarySerializer(serializers.ModelSerializer):
    """A revision without its template (for lists)."""

    agent_type_id = serializers.UUIDField(read_only=True)
    author = serializers.SerializerMethodField(help_text="The committing user's username (null: unknown).")

    class Meta:
        model = AgentTypeRevision
        fields = ["id", "agent_type_id", "version", "message", "author", "created_at"]
        read_only_fields = fields

    def get_author(self, revision) -> str | None:
        return revision.author.username if revision.author_id else None


class AgentTypeRevisionSerializer(AgentTypeRevisionSummarySerializer):
    """A revision with its committed template."""

    template = serializers.JSONField(read_only=True)

    class Meta(AgentTypeRevisionSummarySerializer.Meta):
        fields = [*AgentTypeRevisionSummarySerializer.Meta.fields, "template"]
        read_only_fields = fields


class RevisionCommitSerializer(serializers.Serializer):
    """``POST /agent-types/{id}/revisions`` body."""

    template = TemplateField(help_text="The parameters.agent document to commit, exactly as it is stored.")
    message = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class RevisionDiffSerializer(serializers.Serializer):
    agent_type_id = serializers.UUIDField()
    from_version = serializers.IntegerField()
    to_version = serializers.IntegerField()
    patch = JsonPatchOperationSerializer(many=True, help_text="RFC 6902 operations from one template to the other.")


class InspectAgentTypeSerializer(serializers.Serializer):
    """The agent type as inspect shows it, with its latest template under ``data.parameters.agent``."""

    id = serializers.UUIDField()
    name = serializers.CharField()
    slug = serializers.CharField()
    description = serializers.CharField()
    capabilities = serializers.ListField(child=serializers.CharField())
    handler = serializers.CharField()
    is_active = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    data = serializers.SerializerMethodField()
    revision = serializers.SerializerMethodField()

    @extend_schema_field(
        {
            "type": "object",
            "properties": {
                "parameters": {
                    "type": "object",
                    "properties": {"agent": {"type": "object", "nullable": True, "additionalProperties": True}},
                }
            },
        }
    )
    def get_data(self, agent_type) -> dict[str, Any]:
        revision = self.context.get("revision")
        return {"parameters": {"agent": revision.template if revision else None}}

    @extend_schema_field(serializers.IntegerField(allow_null=True, help_text="The latest revision; null without one."))
    def get_revision(self, agent_type) -> int | None:
        revision = self.context.get("revision")
        return revision.version if revision else None


class OverlayContextSerializer(serializers.Serializer):
    agent_template_overlay = serializers.JSONField(help_text="A partial parameters.agent: tools, skills, sandbox.")


class AdditionalContextSerializer(serializers.Serializer):
    playground_build_kit = OverlayContextSerializer()


class InspectSerializer(serializers.Serializer):
    """``GET /agent-types/{id}/inspect``; ``additional_context`` is absent when the kit failed to build."""

    count = serializers.IntegerField()
    agent_type = InspectAgentTypeSerializer()
    additional_context = AdditionalContextSerializer(required=False)

    @classmethod
    def render(cls, inspection) -> dict[str, Any]:
        body: dict[str, Any] = {
            "count": 1,
            "agent_type": InspectAgentTypeSerializer(
                inspection.agent_type, context={"revision": inspection.revision}
            ).data,
        }
        if inspection.overlay is not None:
            body["additional_context"] = {"playground_build_kit": {"agent_template_overlay": inspection.overlay}}
        return body


class OverrideSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="Dotted path in the effective template.")
    user_value = serializers.JSONField(allow_null=True)
    kit_value = serializers.JSONField(allow_null=True, help_text="null when the kit dropped the user's value.")


class PlaygroundRunRequestSerializer(serializers.Serializer):
    """``POST /agent-types/{id}/playground/runs`` body."""

    project_id = serializers.UUIDField(help_text="A project the caller can write to.")
    template = TemplateField(required=False, help_text="A draft template; default: the latest revision's.")
    build_kit = serializers.BooleanField(required=False, default=True)
    name = serializers.CharField(max_length=200, required=False, allow_blank=False)
    config = serializers.JSONField(required=False, help_text="Instance config (validated by the agent type).")


class PlaygroundAgentSerializer(serializers.ModelSerializer):
    project_id = serializers.UUIDField(read_only=True)
    agent_type_id = serializers.UUIDField(read_only=True)
    agent_type_revision_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = AgentInstance
        fields = [
            "id", "name", "status", "project_id", "agent_type_id", "agent_type_revision_id", "is_playground",
            "config", "created_at",
        ]
        read_only_fields = fields


class ReferenceUsedSerializer(serializers.Serializer):
    slug = serializers.CharField()
    version = serializers.IntegerField()
    source = serializers.ChoiceField(choices=[SOURCE_STATIC, SOURCE_AGENT_TYPE])


class EmbedErrorSerializer(serializers.Serializer):
    type = serializers.CharField()
    code = serializers.CharField()
    message = serializers.CharField()
    path = serializers.CharField()
    reference = serializers.CharField(allow_null=True)


class PlaygroundRunSerializer(serializers.Serializer):
    agent = PlaygroundAgentSerializer()
    effective_template = serializers.JSONField()
    overrides = OverrideSerializer(many=True)
    build_kit = serializers.BooleanField()
    template_source = serializers.ChoiceField(choices=TemplateSource.values)
    revision = serializers.IntegerField(allow_null=True, help_text="The latest committed version (the draft's base).")
    references_used = ReferenceUsedSerializer(many=True)
    replayed = serializers.BooleanField(
        help_text="True when the Idempotency-Key was used before: the answer is the first run's, with the agent as it "
        "is now."
    )

    @classmethod
    def render(cls, run) -> dict[str, Any]:
        return cls(
            {
                "agent": run.agent,
                "effective_template": run.effective,
                "overrides": run.overrides,
                "build_kit": run.build_kit,
                "template_source": run.template_source,
                "revision": run.revision.version if run.revision else None,
                "references_used": run.references_used,
                "replayed": run.replayed,
            }
        ).data


class ReferenceSerializer(serializers.Serializer):
    slug = serializers.CharField(max_length=100)
    version = serializers.JSONField(required=False, help_text="3, \"3\" or \"v3\"; default: latest.")


class ResolveRequestSerializer(serializers.Serializer):
    """``POST /agent-templates/resolve`` body: exactly one of ``template`` and ``reference``."""

    template = TemplateField(required=False)
    reference = ReferenceSerializer(required=False)
    max_depth = serializers.IntegerField(min_value=0, max_value=MAX_DEPTH, default=MAX_DEPTH)
    max_embeds = serializers.IntegerField(min_value=0, max_value=MAX_EMBEDS, default=MAX_EMBEDS)
    error_policy = serializers.ChoiceField(choices=list(ERROR_POLICIES), default=POLICY_EXCEPTION)

    def validate(self, attrs):
        if ("template" in attrs) == ("reference" in attrs):
            raise serializers.ValidationError({"template": "Send exactly one of 'template' and 'reference'."})
        return attrs


class ResolveResponseSerializer(serializers.Serializer):
    template = serializers.JSONField(help_text="The document with its embeds replaced.")
    references_used = ReferenceUsedSerializer(many=True)
    depth_reached = serializers.IntegerField()
    embeds_resolved = serializers.IntegerField()
    errors = EmbedErrorSerializer(many=True)

    @classmethod
    def render(cls, resolution) -> dict[str, Any]:
        return cls(
            {
                "template": resolution.value,
                "references_used": resolution.references_used,
                "depth_reached": resolution.depth_reached,
                "embeds_resolved": resolution.embeds_resolved,
                "errors": resolution.errors,
            }
        ).data


class PlatformOpSerializer(serializers.Serializer):
    op = serializers.CharField(help_text="The tool's name, as a template names it.")
    title = serializers.CharField()
    description = serializers.CharField()
    input_schema = serializers.JSONField()
    output_schema = serializers.JSONField(allow_null=True)
    read_only = serializers.BooleanField()
    annotations = serializers.JSONField(help_text="MCP tool annotations (readOnlyHint, destructiveHint, ...).")
    permission = serializers.ChoiceField(choices=list(PERMISSIONS), help_text="The default permission.")
    method = serializers.CharField(allow_null=True)
    route = serializers.CharField(allow_null=True, help_text="The API route that does the same.")
    in_build_kit = serializers.BooleanField()


class FindCapabilitiesRequestSerializer(serializers.Serializer):
    use_cases = serializers.ListField(
        child=serializers.CharField(max_length=500), min_length=1, max_length=20,
        help_text="Plain-language descriptions of what an agent should do.",
    )
    limit = serializers.IntegerField(min_value=1, max_value=20, default=5)


class CapabilityMatchSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=["agent_type", "agent_class"],
        help_text="`agent_type`: an active agent type; `agent_class`: a registered agent class no agent type uses "
        "yet (sync it to a type to spawn it).",
    )
    agent_type_id = serializers.UUIDField(allow_null=True, help_text="null for an `agent_class` match.")
    slug = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    capabilities = serializers.ListField(child=serializers.CharField())
    agent_class = serializers.CharField(allow_null=True, help_text="The agent class behind it (its slug), if any.")
    score = serializers.IntegerField()
    matched_terms = serializers.ListField(child=serializers.CharField())


class CapabilityResultSerializer(serializers.Serializer):
    use_case = serializers.CharField()
    matches = CapabilityMatchSerializer(many=True)


class FindCapabilitiesResponseSerializer(serializers.Serializer):
    data = CapabilityResultSerializer(many=True)
