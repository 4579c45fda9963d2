"""Errors of the agent runtime.

``NotRunnable``, ``RunFinished``, ``RequestAlreadyDecided``, ``NoPendingRequest`` and
``UnsupportedRequestedSchema`` are refusals the API maps to HTTP (``syndarix.api.exceptions``). ``RunFailure`` is
how agent code ends a run as ``failed`` with a code; ``RunInterrupted`` is how the runtime stops agent code at a
step boundary.
"""

from __future__ import annotations

from syndarix.exceptions import DomainError, InvalidInput


class NotRunnable(InvalidInput):
    """The agent cannot be run: its class has no ``run(ctx)`` and it has no template (400)."""

    code = "not_runnable"


class RunFinished(DomainError):
    """The run already succeeded or failed; it cannot be cancelled (409)."""

    code = "run_finished"

    def __init__(self, status: str) -> None:
        super().__init__(f"The run already {status}.", current_status=status)


class RequestAlreadyDecided(DomainError):
    """The approval or input request was already answered, or cancelled (409)."""

    code = "already_decided"

    def __init__(self, status: str) -> None:
        super().__init__(f"This request is already {status}.", current_status=status)


class NoPendingRequest(DomainError):
    """The run is not waiting for input or a connection (409)."""

    code = "no_pending_input"

    def __init__(self) -> None:
        super().__init__("The run is not waiting for input.")


class UnsupportedRequestedSchema(DomainError):
    """An input request stored with a ``requestedSchema`` that is not an MCP elicitation schema (before the agent
    loop refused those): an answer cannot be checked against it, only declined or cancelled (409)."""

    code = "unsupported_schema"

    def __init__(self) -> None:
        super().__init__(
            "This input request's schema is not an MCP elicitation schema, so no answer can be checked against it; "
            "decline or cancel it.", field="action",
        )


class RunFailure(Exception):
    """Raised by agent code (or the metered client) to end the run as ``failed`` with ``code`` and ``message``.

    Codes the runtime uses: ``upstream_unavailable`` (the LLM upstream stayed unavailable for
    ``AGENT_LLM_OUTAGE_SECONDS``), ``upstream_error`` (it refused the request, or answered nonsense),
    ``max_steps_exceeded`` (the agent loop), ``agent_error`` (an unexpected exception in the agent class).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RunInterrupted(BaseException):  # noqa: N818 - a control-flow signal, like KeyboardInterrupt
    """Stops agent code at a step boundary: the agent was paused or terminated, the run cancelled, or the run
    now waits for a person. A ``BaseException`` so that agent code catching ``Exception`` cannot swallow it.

    ``reason`` is ``PAUSED``, ``CANCELLED``, ``WAITING`` or ``RETRYING`` (the LLM upstream is unavailable: the run
    waits for its next attempt without a worker, ``agents.runtime.services.run_retry_later``).
    """

    PAUSED = "paused"
    CANCELLED = "cancelled"
    WAITING = "waiting"
    RETRYING = "retrying"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
