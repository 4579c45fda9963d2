"""Domain errors shared by every app.

Services raise these; the API's one exception handler (`syndarix.api.exceptions`) turns them into
the error envelope with `status_code`, and the admin and management commands show `message`.
"""

from __future__ import annotations

from typing import Any

#: What a stale write (django-fsm's ``ConcurrentTransition``) tells people, in the API and the admin alike.
STALE_WRITE_MESSAGE = "The agent changed state meanwhile; reload and retry."


class DomainError(Exception):
    """A business rule refused an action.

    Attributes:
        code: machine-readable error code for the envelope (e.g. ``"invalid_transition"``).
        status_code: the HTTP status the API answers with (409 by default: a conflict with state).
        message: a sentence for people.
        field: the request field at fault, or ``None``.
        extra: additional JSON-serializable keys added to the error object (e.g. allowed targets).
    """

    code = "conflict"
    status_code = 409

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.field = field
        self.extra = extra


class ServiceUnavailable(DomainError):
    """A feature is switched off by configuration (HTTP 503); ``retry_after`` (seconds) is sent as ``Retry-After``."""

    code = "service_unavailable"
    status_code = 503
    retry_after = 60


class DependencyUnavailable(ServiceUnavailable):
    """A service the request needs (``dependency``: ``"database"``, ``"cache"``) is lost (HTTP 503).

    Raised (or mapped from the driver's error by ``syndarix.api.outages``) when a dependency refuses
    connections or does not answer within its timeout; ``Retry-After`` is short, outages are expected to pass.
    """

    retry_after = 5

    def __init__(self, dependency: str, message: str | None = None) -> None:
        super().__init__(message or f"The {dependency} is unavailable; retry shortly.", dependency=dependency)
        self.dependency = dependency


class PayloadTooLarge(DomainError):
    """The request body exceeds a configured size limit (HTTP 413)."""

    code = "payload_too_large"
    status_code = 413


class NotFound(DomainError):
    """The object does not exist, or is not visible to the caller (HTTP 404)."""

    code = "not_found"
    status_code = 404


class PermissionDenied(DomainError):
    """The caller may see the object but not do this to it (HTTP 403), e.g. a workspace viewer's write."""

    code = "permission_denied"
    status_code = 403


class InvalidInput(DomainError):
    """Input that passed the serializer fails a business rule (HTTP 400)."""

    code = "validation_error"
    status_code = 400
