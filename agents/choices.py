"""Choices for the agents app. Wire values are lowercase, as in the seed's ``AgentStatus``."""

from django.db import models


class AgentStatus(models.TextChoices):
    IDLE = "idle", "Idle"
    WORKING = "working", "Working"
    WAITING = "waiting", "Waiting"
    PAUSED = "paused", "Paused"
    TERMINATED = "terminated", "Terminated"


#: States from which no transition leaves.
TERMINAL_STATUSES = frozenset({AgentStatus.TERMINATED})

#: States that count against a workspace's concurrency limit.
LIVE_STATUSES = frozenset(set(AgentStatus) - TERMINAL_STATUSES)


class TerminationReason(models.TextChoices):
    USER = "user", "Terminated by a user"
    FAILED = "failed", "Failed"
    TIMED_OUT = "timed_out", "Timed out"
    BUDGET = "budget", "Budget exhausted"
    SUPERSEDED = "superseded", "Superseded"


class RunStatus(models.TextChoices):
    """Where an ``AgentRun`` stands (agents/runtime/)."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting for a person"
    PAUSED = "paused", "Paused"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


#: Run states that end a run for good.
RUN_FINISHED_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})

#: Run states that hold the agent: at most one run per agent is in one of them (one run at a time).
RUN_ACTIVE_STATUSES = frozenset({RunStatus.RUNNING, RunStatus.WAITING, RunStatus.PAUSED})


class StepKind(models.TextChoices):
    """What one recorded step of a run was."""

    LLM_CALL = "llm_call", "LLM call"
    TOOL_CALL = "tool_call", "Tool call"
    MESSAGE = "message", "Message"
    APPROVAL = "approval", "Approval"
    INPUT = "input", "Input"


class RunRequestKind(models.TextChoices):
    """What a waiting run asks a person for."""

    APPROVAL = "approval", "Approval of a tool call"
    INPUT = "input", "Input (MCP elicitation)"
    CONNECTION = "connection", "A connection"


class RunRequestStatus(models.TextChoices):
    """Where a run's request to a person stands."""

    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    ANSWERED = "answered", "Answered"
    DECLINED = "declined", "Declined"
    CANCELLED = "cancelled", "Cancelled"
