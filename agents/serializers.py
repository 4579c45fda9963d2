"""API representations of agent types, agent instances, their ledger and metrics, and the inputs of
the lifecycle endpoints (spawn, update, pause/resume, terminate, usage)."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from syndarix.api.representation import CompiledRepresentationMixin
from syndarix.exceptions import NotFound

from .choices import AgentStatus, TerminationReason
from .models import AgentInstance, AgentTransition, AgentType, validate_registered_handler


class StringListField(serializers.ListField):
    """A JSON list whose items must already be strings (numbers are refused, not coerced)."""

    child = serializers.CharField(allow_blank=False, max_length=100)
    default_error_messages = {"not_strings": "Must be a list of strings."}

    def to_internal_value(self, data):
        if isinstance(data, list) and not all(isinstance(item, str) for item in data):
            self.fail("not_strings")
        return super().to_internal_value(data)


class AgentTypeSerializer(serializers.ModelSerializer):
    """An agent type (template). ``config_schema`` must be a valid JSON Schema (draft 2020-12);
    ``capabilities`` a list of strings; ``handler`` empty or the slug of a registered agent class."""

    capabilities = StringListField(required=False, help_text="Capability names.")
    config_schema = serializers.DictField(required=False, help_text="JSON Schema that instance `config` must satisfy.")

    class Meta:
        model = AgentType
        fields = [
            "id",
            "name",
            "slug",
            "description",
            "capabilities",
            "config_schema",
            "handler",
            "is_active",
            "max_tokens",
            "max_cost_usd",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {
            "max_tokens": {"min_value": 0, "help_text": "Default token budget of its agents (null: none)."},
            "max_cost_usd": {"min_value": Decimal("0"), "help_text": "Default cost budget in USD (null: none)."},
        }

    def validate_handler(self, value: str) -> str:
        """A new or changed handler must name a registered agent class (400 ``unknown_handler``)."""
        if self.instance is None or value != self.instance.handler:
            try:
                validate_registered_handler(value)
            except DjangoValidationError as exc:
                raise serializers.ValidationError(exc.messages, code=exc.code) from exc
        return value

    def validate(self, attrs):
        # The model's clean() is the one definition of a valid type (schema check, capability list).
        candidate = AgentType(
            **{
                "capabilities": getattr(self.instance, "capabilities", []),
                "config_schema": getattr(self.instance, "config_schema", {}),
                **{k: v for k, v in attrs.items() if k in ("capabilities", "config_schema")},
            }
        )
        try:
            candidate.clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(serializers.as_serializer_error(exc)) from exc
        return attrs


class AgentInstanceSerializer(CompiledRepresentationMixin, serializers.ModelSerializer):
    """An agent: every model field, its type and project by name and slug, the number of issues
    assigned to it and the statuses it may move to now. Usage: ``tokens_used`` (tokens),
    ``cost_incurred`` (USD, decimal string). Rendered through a compiled plan (the list's hot path)."""

    project_id = serializers.UUIDField(read_only=True)
    project_name = serializers.CharField(source="project.name", read_only=True)
    project_slug = serializers.CharField(source="project.slug", read_only=True)
    agent_type_id = serializers.UUIDField(read_only=True)
    agent_type_name = serializers.CharField(source="agent_type.name", read_only=True)
    agent_type_slug = serializers.CharField(source="agent_type.slug", read_only=True)
    allowed_transitions = serializers.ListField(
        child=serializers.ChoiceField(choices=AgentStatus.choices),
        read_only=True,
        help_text="Statuses reachable from the current one.",
    )
    assigned_issues_count = serializers.IntegerField(read_only=True)
    agent_type_revision_id = serializers.UUIDField(read_only=True, allow_null=True)
    agent_type_revision_version = serializers.IntegerField(
        source="agent_type_revision.version", read_only=True, allow_null=True,
        help_text="Version of the committed template the agent was spawned from (null: none).",
    )
    termination_reason = serializers.ChoiceField(
        choices=TerminationReason.choices, allow_blank=True, read_only=True,
        help_text="Why the agent was terminated; empty while it is not.",
    )

    class Meta:
        model = AgentInstance
        fields = [
            "id",
            "project_id",
            "project_name",
            "project_slug",
            "agent_type_id",
            "agent_type_name",
            "agent_type_slug",
            "agent_type_revision_id",
            "agent_type_revision_version",
            "effective_template",
            "name",
            "status",
            "allowed_transitions",
            "current_task",
            "short_term_memory",
            "long_term_memory_ref",
            "session_id",
            "config",
            "is_playground",
            "last_activity_at",
            "last_heartbeat_at",
            "last_error",
            "terminated_at",
            "termination_reason",
            "tasks_completed",
            "tokens_used",
            "cost_incurred",
            "max_tokens",
            "max_cost_usd",
            "assigned_issues_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class AgentSpawnSerializer(serializers.Serializer):
    """Spawn input. ``project_id``, when sent, must equal the URL's project."""

    agent_type_id = serializers.UUIDField(help_text="An active agent type.")
    name = serializers.CharField(max_length=200)
    config = serializers.DictField(required=False, default=dict, help_text="Validated against the type's schema.")
    current_task = serializers.CharField(required=False, allow_blank=True, default="")
    project_id = serializers.UUIDField(required=False, help_text="Optional; must match the URL.")

    def validate_project_id(self, value):
        if value != self.context["project"].pk:
            raise serializers.ValidationError("Agent project_id must match the URL project_id.", code="mismatch")
        return value

    def validate_agent_type_id(self, value):
        agent_type = AgentType.objects.filter(pk=value).first()
        if agent_type is None:
            raise NotFound(f"Agent type {value} not found.", field="agent_type_id")
        return agent_type


class AgentUpdateSerializer(serializers.Serializer):
    """PATCH input: editable fields, and ``status`` (moved through the lifecycle guard).

    Any other field (counters, timestamps, ``project_id`` ...) is ignored and stays unchanged.
    """

    name = serializers.CharField(max_length=200, required=False)
    current_task = serializers.CharField(required=False, allow_blank=True)
    short_term_memory = serializers.DictField(required=False)
    long_term_memory_ref = serializers.CharField(max_length=500, required=False, allow_blank=True)
    session_id = serializers.CharField(max_length=200, required=False, allow_blank=True)
    config = serializers.DictField(required=False, help_text="Validated against the type's schema.")
    max_tokens = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=10**15,
        help_text="Token budget (null: the agent type's default).",
    )
    max_cost_usd = serializers.DecimalField(
        max_digits=14, decimal_places=6, min_value=Decimal("0"), required=False, allow_null=True,
        help_text="Cost budget in USD (null: the agent type's default).",
    )
    status = serializers.ChoiceField(choices=AgentStatus.choices, required=False, help_text="Target status.")


class AgentActionSerializer(serializers.Serializer):
    """Optional input of pause and resume: a free-text reason for the ledger."""

    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=1000)


class AgentTerminateSerializer(AgentActionSerializer):
    """Optional input of terminate (JSON body or query string)."""

    termination_reason = serializers.ChoiceField(
        choices=TerminationReason.choices, required=False, default=TerminationReason.USER
    )


class AgentUsageSerializer(serializers.Serializer):
    """Usage increments (all ≥ 0): ``tokens`` (tokens), ``cost`` (USD), ``tasks_completed`` (tasks)."""

    tokens = serializers.IntegerField(min_value=0, max_value=10**12, default=0)
    cost = serializers.DecimalField(
        max_digits=14, decimal_places=6, min_value=Decimal("0"), max_value=Decimal("1000000"), default=Decimal("0")
    )
    tasks_completed = serializers.IntegerField(min_value=0, max_value=10**6, default=0)


class AgentMetricsSerializer(serializers.Serializer):
    """Counts by status and usage totals; ``total_cost_incurred`` is USD as a decimal string."""

    total_instances = serializers.IntegerField()
    active_instances = serializers.IntegerField(help_text="Agents WORKING.")
    idle_instances = serializers.IntegerField()
    waiting_instances = serializers.IntegerField()
    paused_instances = serializers.IntegerField()
    terminated_instances = serializers.IntegerField()
    total_tasks_completed = serializers.IntegerField()
    total_tokens_used = serializers.IntegerField()
    total_cost_incurred = serializers.DecimalField(max_digits=None, decimal_places=6)
    total_unpriced_tokens = serializers.IntegerField(
        help_text="Tokens of calls whose model has no price: metered at 0 USD, so not in the cost. Add the model's "
                  "price (AI services › Model prices) to cost them."
    )


class AgentTransitionSerializer(serializers.ModelSerializer):
    """One ledger row. ``from_status`` is blank for the spawn; ``actor_id`` is null for the system; ``run_id`` names
    the run that made the change (the runtime, or a tool the run called) and ``actor_agent_id`` the agent acting
    through a platform tool."""

    agent_id = serializers.UUIDField(read_only=True)
    from_status = serializers.ChoiceField(
        choices=AgentStatus.choices, allow_blank=True, read_only=True,
        help_text='The status before the change; `""` on the spawn row (there was none).',
    )
    run_id = serializers.UUIDField(read_only=True, allow_null=True)
    actor_agent_id = serializers.UUIDField(read_only=True, allow_null=True)
    actor_id = serializers.IntegerField(read_only=True, allow_null=True)
    actor_username = serializers.CharField(source="actor.get_username", read_only=True, allow_null=True)

    class Meta:
        model = AgentTransition
        fields = [
            "id",
            "agent_id",
            "from_status",
            "to_status",
            "actor_id",
            "actor_username",
            "reason",
            "request_id",
            "run_id",
            "actor_agent_id",
            "created_at",
        ]
        read_only_fields = fields
