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
