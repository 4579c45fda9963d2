"""Domain errors of the agents app (mapped to HTTP by ``syndarix.api.exceptions``)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django_fsm import ConcurrentTransition

from syndarix.exceptions import STALE_WRITE_MESSAGE, DomainError, ServiceUnavailable


class InvalidTransition(DomainError):
    """The lifecycle table forbids moving from ``current_status`` to ``requested_status`` (409)."""

    code = "invalid_transition"

    def __init__(self, current: str, requested: str, allowed: list[str], *, message: str | None = None) -> None:
        super().__init__(
            message or f"Cannot transition agent from '{current}' to '{requested}'.",
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


class UsageLimitExceeded(DomainError):
    """Adding usage would take an agent's counter past the largest value its column holds (409).

    The error names the request ``field`` (``tokens``, ``cost``, ``tasks_completed``), the ``counter``
    (``tokens_used``, ``cost_incurred``, ``tasks_completed``), its ``limit`` and its ``current`` value;
    nothing was recorded.
    """

    code = "usage_limit_exceeded"

    def __init__(self, *, field: str, counter: str, limit, current) -> None:
        super().__init__(
            f"Adding this {field} would take the agent's {counter} past its limit of {limit} (now {current}); "
            "nothing was recorded.",
            field=field, counter=counter, limit=str(limit), current=str(current),
        )


class ConcurrencyLimitExceeded(DomainError):
    """Spawning would exceed the workspace's limit of non-terminated agents (409)."""

    code = "concurrency_limit"

    def __init__(self, limit: int, current: int) -> None:
        live = f"{current} live agent" + ("" if current == 1 else "s")
        super().__init__(f"The workspace already has {live}; its limit is {limit}.", limit=limit, current=current)


class MemoryConflict(DomainError):
    """A hook's change to ``short_term_memory`` collides with a write made while the hook ran (409).

    ``path`` is the JSON Pointer (RFC 6901) where the two disagree.
    """

    code = "memory_conflict"

    def __init__(self, path: str) -> None:
        super().__init__(
            f"short_term_memory changed at '{path or '/'}' while the hook ran; the hook's change was not saved.",
            field="short_term_memory",
            path=path,
        )


class AgentsDisabled(ServiceUnavailable):
    """``AGENTS_ENABLED`` is false: spawning and transitions are refused (503)."""

    code = "agents_disabled"

    def __init__(self) -> None:
        super().__init__("Agents are disabled on this deployment (AGENTS_ENABLED=false).")


# --- Shared contexts ---


class VersionConflict(DomainError):
    """``expected_version`` is not the context's current version: someone wrote meanwhile (409)."""

    code = "version_conflict"

    def __init__(self, *, current_version: int, expected_version: int | None) -> None:
        super().__init__(
            f"The context is at version {current_version}, not {expected_version}; re-read it and retry.",
            field="expected_version",
            current_version=current_version,
            expected_version=expected_version,
        )


class VersionNotFound(DomainError):
    """The context never had this version number (404)."""

    code = "version_not_found"
    status_code = 404

    def __init__(self, version: int, *, current_version: int) -> None:
        super().__init__(
            f"Version {version} does not exist; the context is at version {current_version}.",
            field="version",
            version=version,
            current_version=current_version,
        )


class VersionPruned(DomainError):
    """The version existed but retention has deleted it (404)."""

    code = "version_pruned"
    status_code = 404

    def __init__(self, version: int, *, current_version: int) -> None:
        super().__init__(
            f"Version {version} was removed by the retention policy.",
            field="version",
            version=version,
            current_version=current_version,
        )


class AlreadyCurrentVersion(DomainError):
    """Rolling back to the version that is already current (409)."""

    code = "already_current"

    def __init__(self, version: int) -> None:
        super().__init__(f"Version {version} is already the current version.", field="target_version",
                         current_version=version)


class ContextExists(DomainError):
    """A context with this name already exists for the project and agent (409)."""

    code = "context_exists"

    def __init__(self, name: str) -> None:
        super().__init__(f"A context named '{name}' already exists here.", field="name")


class ContextNotFound(DomainError):
    """The context does not exist (any more), or is not visible to the caller (404)."""

    code = "not_found"
    status_code = 404

    def __init__(self) -> None:
        super().__init__("Context not found.")


class ContextNotWritable(DomainError):
    """An agent tried to write a context that belongs to another agent or project (403)."""

    code = "permission_denied"
    status_code = 403

    def __init__(self, message: str) -> None:
        super().__init__(message)


#: Errors a service raises for a refused action; the admin and the commands show them with
#: ``describe_error`` instead of failing.
SERVICE_ERRORS = (DomainError, ValidationError, ConcurrentTransition)


def describe_error(exc: Exception) -> str:
    """One sentence for people (admin messages, command errors) from an error a service raised.

    ``InvalidTransition`` adds the allowed targets; a Django ``ValidationError`` lists each
    ``field.path: message``; a stale write (``ConcurrentTransition``) asks to reload.
    """
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
        return STALE_WRITE_MESSAGE
    return str(exc)
