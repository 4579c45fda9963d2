"""Errors of the AI services app.

Refusals before a tool runs are exceptions mapped to HTTP by ``syndarix.api.exceptions``; failures
while a tool runs (upstream down, bad answer) are ``UpstreamError``s that the tool turns into an
``isError: true`` result, never an HTTP error.
"""

from __future__ import annotations

from rest_framework.exceptions import ValidationError

from syndarix.exceptions import InvalidInput, ServiceUnavailable


class AIServicesDisabled(ServiceUnavailable):
    """The configured provider's required settings are not all set (503)."""

    code = "ai_services_disabled"

    def __init__(self, missing: list[str] | None = None) -> None:
        detail = f" Missing: {', '.join(missing)}." if missing else ""
        super().__init__(f"AI services are disabled: the upstream is not configured.{detail}")


class UnknownTool(InvalidInput):
    """``tools/call`` named a tool that is not registered (400, field ``name``)."""

    code = "unknown_tool"

    def __init__(self, name: str, available: list[str]) -> None:
        super().__init__(f"Unknown tool '{name}'.", field="name", available_tools=available)


class InvalidArguments(ValidationError):
    """Tool arguments that fail the tool's input schema or its own checks (400 ``invalid_arguments``).

    ``problems`` is a list of ``(field, message)`` pairs, ``field`` a dotted path such as
    ``arguments.prompt_template_json.messages.0.role``. The API answers one error object per
    problem, each with its field (it subclasses DRF's ``ValidationError`` so the one exception
    handler flattens it per field); the admin and the command read ``problems`` directly.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        detail: dict[str, list[str]] = {}
        for field, message in problems:
            detail.setdefault(field, []).append(message)
        super().__init__(detail, code="invalid_arguments")

    @property
    def message(self) -> str:
        """One line per problem: ``<field>: <message>``."""
        return "\n".join(f"{field}: {message}" for field, message in self.problems)


class UpstreamError(Exception):
    """The upstream LLM service failed; ``message`` is safe to show (never the upstream body).

    ``trace_id`` is the upstream's trace id when its answer carried one.
    """

    code = "upstream_error"

    def __init__(self, message: str, *, trace_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.trace_id = trace_id


class UpstreamTimeout(UpstreamError):
    code = "upstream_timeout"


class UpstreamUnreachable(UpstreamError):
    code = "upstream_unreachable"


class UpstreamHTTPError(UpstreamError):
    """The upstream answered a non-2xx ``status``; ``retry_after`` is its ``Retry-After`` (seconds) or ``None``.

    ``detail`` is the upstream's own error text (its ``error.message``, ``detail`` or ``message``, else the start of
    its body), at most ``client.UPSTREAM_DETAIL_CHARS`` characters, or ``""``. It is kept apart from ``message``:
    the agent runtime shows it on the run (the operator configured that upstream), the AI tools do not.
    """

    code = "upstream_http_error"

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None, trace_id: str | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message, trace_id=trace_id)
        self.status = status
        self.retry_after = retry_after
        self.detail = detail


class UpstreamBadResponse(UpstreamError):
    code = "upstream_bad_response"


class UpstreamStreamBroken(UpstreamBadResponse):
    """A streamed answer (``text/event-stream``) that cannot be read: a chunk that is not JSON or not a chunk, an
    error mid-stream, or no chunk at all. The LLM client then asks again without streaming."""
