"""API representations of runs, their steps and their requests to people, and the inputs of the run endpoints."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from projects.models import Issue

from ..models import AgentRun, AgentRunRequest, AgentRunStep
from .selectors import run_steps


class RunErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="`upstream_unavailable`, `budget_exceeded`, `heartbeat_lost`, ...")
    message = serializers.CharField()


class RunRetrySerializer(serializers.Serializer):
    """The LLM upstream is unavailable and the run waits for its next attempt (it stays ``running``, holding no
    worker), for up to ``AGENT_LLM_OUTAGE_SECONDS`` from ``since``; then it fails with ``upstream_unavailable``."""

    next_attempt_at = serializers.DateTimeField(source="retry_at", help_text="When the run tries the upstream again.")
    attempts = serializers.IntegerField(source="retry_count", help_text="Failed attempts so far in this outage.")
    last_error = serializers.CharField(source="retry_error", help_text="The upstream's last error.")
    since = serializers.DateTimeField(source="retry_since", help_text="When the outage began for this run.")


class AgentRunRequestSerializer(serializers.ModelSerializer):
    """Something the run asks a person: an ``approval`` of a tool call (``tool_name``, ``arguments``), or
    ``input`` / a ``connection`` (``message``, ``requested_schema``; MCP elicitation)."""

    run_id = serializers.UUIDField(read_only=True)
    decided_by = serializers.CharField(source="decided_by.get_username", read_only=True, allow_null=True)

    class Meta:
        model = AgentRunRequest
        fields = [
            "id", "run_id", "kind", "status", "tool_name", "arguments", "message", "requested_schema", "response",
            "reason", "decided_by", "decided_at", "requested_at", "executed_at",
        ]
        read_only_fields = fields


class AgentRunStepSerializer(serializers.ModelSerializer):
    """One step of the trace. Usage of an ``llm_call``: ``prompt_tokens``, ``completion_tokens``, ``cost`` (USD)."""

    class Meta:
        model = AgentRunStep
        fields = [
            "index", "kind", "name", "input", "output", "prompt_tokens", "completion_tokens", "cost", "duration_ms",
            "error", "created_at",
        ]
        read_only_fields = fields


class AgentRunSerializer(serializers.ModelSerializer):
    """A run. ``tokens_used`` (tokens) and ``cost`` (USD, decimal string) are the sums of its steps;
    ``unpriced_tokens`` are the tokens of models without a price (metered at 0, so not in ``cost``); ``error`` is
    ``{"code", "message"}`` or null; ``pending`` lists what it waits for a person to answer."""

    agent_id = serializers.UUIDField(read_only=True)
    project_id = serializers.UUIDField(source="agent.project_id", read_only=True)
    issue_id = serializers.UUIDField(read_only=True, allow_null=True)
    requested_by = serializers.CharField(source="requested_by.get_username", read_only=True, allow_null=True)
    error = RunErrorSerializer(read_only=True, allow_null=True)
    retry = serializers.SerializerMethodField()
    pending = AgentRunRequestSerializer(source="pending_requests", many=True, read_only=True)

    class Meta:
        model = AgentRun
        fields = [
            "id", "agent_id", "project_id", "issue_id", "instruction", "status", "result", "error", "retry",
            "steps_completed", "tokens_used", "cost", "unpriced_tokens", "attempts", "requested_by", "request_id",
            "worker", "pending", "created_at", "started_at", "finished_at", "updated_at",
        ]
        read_only_fields = fields


    @extend_schema_field(RunRetrySerializer(allow_null=True))
    def get_retry(self, run: AgentRun) -> dict | None:
        """``RunRetrySerializer`` while the run waits out an LLM outage (``retry_at`` set), else ``None``."""
        return RunRetrySerializer(run).data if run.retry_at is not None else None


class AgentRunDetailSerializer(AgentRunSerializer):
    """A run with its steps (the first ``selectors.DETAIL_STEPS_LIMIT``; ``steps_truncated`` says when there are
    more: page through them at ``.../steps``)."""

    steps = serializers.SerializerMethodField()
    steps_truncated = serializers.SerializerMethodField()

    class Meta(AgentRunSerializer.Meta):
        fields = [*AgentRunSerializer.Meta.fields, "steps", "steps_truncated"]
        read_only_fields = fields

    def _steps(self, run: AgentRun) -> list[AgentRunStep]:
        if not hasattr(run, "_detail_steps"):
            run._detail_steps = run_steps(run)
        return run._detail_steps

    @extend_schema_field(AgentRunStepSerializer(many=True))
    def get_steps(self, run: AgentRun) -> list[dict]:
        return AgentRunStepSerializer(self._steps(run), many=True).data

    def get_steps_truncated(self, run: AgentRun) -> bool:
        return run.steps_completed > len(self._steps(run))


class RunCreateSerializer(serializers.Serializer):
    """Input of ``POST .../runs``: an ``instruction``, an ``issue_id`` of the agent's project, or both."""

    instruction = serializers.CharField(required=False, allow_blank=True, default="", max_length=100_000,
                                        trim_whitespace=False)
    issue_id = serializers.UUIDField(required=False, allow_null=True, default=None,
                                     help_text="An issue of the agent's project; the agent becomes its assignee.")

    def validate_issue_id(self, value):
        if value is None:
            return None
        issue = Issue.objects.filter(pk=value, project=self.context["project"]).first()
        if issue is None:
            raise serializers.ValidationError("No such issue in this project.", code="does_not_exist")
        return issue

    def validate(self, attrs):
        if not attrs["instruction"].strip() and attrs["issue_id"] is None:
            raise serializers.ValidationError({"instruction": ["Send an instruction, an issue_id, or both."]})
        return attrs


class ApprovalDecisionSerializer(serializers.Serializer):
    """Input of ``POST .../approvals/{id}``."""

    decision = serializers.ChoiceField(choices=["approve", "deny"])
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class RunInputSerializer(serializers.Serializer):
    """Input of ``POST .../runs/{id}/input``: the answer to the run's pending input or connection request (an MCP
    elicitation result: ``action`` and, to accept, ``content`` valid against the requested schema)."""

    action = serializers.ChoiceField(choices=["accept", "decline", "cancel"], default="accept")
    content = serializers.DictField(required=False, allow_null=True, default=None)
