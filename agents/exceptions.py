"""Domain errors of the agents app (mapped to HTTP by ``syndarix.api.exceptions``)."""

from __future__ import annotations

from syndarix.exceptions import DomainError, ServiceUnavailable


class InvalidTransition(DomainError):
    """The lifecycle table forbids moving from ``current_status`` to ``requested_status`` (409)."""

    code = "invalid_transition"

    def __init__(self, current: str, requested: str, allowed: list[str]) -> None:
        super().__init__(
            f"Cannot transition agent from '{current}' to '{requested}'.",
            field="status",
            current_status=current,
            requested_status=requested,
            allowed_transitions=allowed,
        )


class AlreadyTerminated(DomainError):
    """Terminating an agent that is already terminated (409, the seed's rule)."""

    code = "already_terminated"

    def __init__(self) -> None:
        super().__init__("Agent is already terminated.", field="status", current_status="terminated",
                         allowed_transitions=[])


class AgentTerminated(DomainError):
    """A write (usage, update) against a terminated agent (409)."""

    code = "agent_terminated"

    def __init__(self, action: str = "change") -> None:
        super().__init__(f"Cannot {action} a terminated agent.", current_status="terminated")


class ConcurrencyLimitExceeded(DomainError):
    """Spawning would exceed the workspace's limit of non-terminated agents (409)."""

    code = "concurrency_limit"

    def __init__(self, limit: int, current: int) -> None:
        super().__init__(
            f"The workspace already runs {current} of at most {limit} agents.", limit=limit, current=current
        )


class AgentsDisabled(ServiceUnavailable):
    """``AGENTS_ENABLED`` is false: spawning and transitions are refused (503)."""

    code = "agents_disabled"

    def __init__(self) -> None:
        super().__init__("Agents are disabled on this deployment (AGENTS_ENABLED=false).")


def describe_error(exc: Exception) -> str:
    """One sentence for people (admin messages, command errors) from an error a service raised.

    ``InvalidTransition`` adds the allowed targets; a Django ``ValidationError`` lists each
    ``field.path: message``; a stale write (``ConcurrentTransition``) asks to reload.
    """
    from django.core.exceptions import ValidationError
    from django_fsm import ConcurrentTransition

    if isinstance(exc, InvalidTransition):
        allowed = ", ".join(exc.extra["allowed_transitions"]) or "none"
        return f"{exc.message} Allowed from '{exc.extra['current_status']}': {allowed}."
    if isinstance(exc, DomainError):
        return exc.message
    if isinstance(exc, ValidationError):
        if hasattr(exc, "error_dict"):
            items = exc.message_dict.items()
            return "; ".join(f"{field}: {message}" for field, messages in items for message in messages)
        return "; ".join(exc.messages)
    if isinstance(exc, ConcurrentTransition):
        return "The agent changed state meanwhile; reload and retry."
    return str(exc)
