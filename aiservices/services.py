"""AI services: status, tool calls and their records (the one path for the API, admin and command).

Contract: agenta-contracts.md part A (status and ``tools/call`` shapes, the refine-prompt tool),
made stricter here: a permission, per-user rate limits, output validation and a record of every call.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from django_ratelimit.exceptions import Ratelimited

from syndarix.api.ratelimit import RateUsage, check_sliding_window
from syndarix.exceptions import DomainError

from .choices import CallOutcome
from .exceptions import AIServicesDisabled, InvalidArguments, UnknownTool
from .models import EDIT_WORKFLOWS_PERMISSION, AIServiceCall
from .providers import get_provider
from .tools import Tool, ToolResult, registry

logger = logging.getLogger(__name__)

#: Per user and tool, as ``(calls, seconds)`` sliding windows: at most 10 calls in any 10 seconds
#: (the burst) and 30 in any 60 seconds. Charged after the tool name is known, before the arguments
#: are checked; only admitted calls count.
TOOL_CALL_LIMITS: tuple[tuple[int, int], ...] = ((10, 10), (30, 60))
#: Per user, whatever the tool and whatever the outcome: charged before anything else, so the calls a
#: user can make the service record (unknown tools, calls while disabled, invalid arguments, refusals
#: by the per-tool limit) are bounded too. Looser than the per-tool limits, so for one tool those bind
#: first; refusals by this limit are not recorded (like 401 and 403).
USER_CALL_LIMITS: tuple[tuple[int, int], ...] = ((20, 10), (60, 60))

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


def ai_services_missing_settings() -> list[str]:
    """Settings the configured provider still needs (``["AI_SERVICES_PROVIDER"]`` if it is unknown)."""
    provider = get_provider()
    if provider is None:
        return ["AI_SERVICES_PROVIDER"]
    return provider.missing_settings()


def ai_services_enabled() -> bool:
    """True exactly when ``AI_SERVICES_PROVIDER`` is known and all its required settings are non-blank."""
    return not ai_services_missing_settings()


def ensure_ai_services_enabled() -> None:
    """Raise ``AIServicesDisabled`` (503 ``ai_services_disabled``) when the upstream is not configured."""
    missing = ai_services_missing_settings()
    if missing:
        raise AIServicesDisabled(missing)


def user_can_call_tools(user) -> bool:
    """Whether ``user`` holds ``aiservices.edit_workflows`` (superusers hold every permission)."""
    return bool(user is not None and user.is_active and user.has_perm(EDIT_WORKFLOWS_PERMISSION))


def ai_services_status(*, user) -> dict[str, Any]:
    """``{"enabled": bool, "tools": [ToolDefinition]}`` for ``user``.

    Disabled: ``{"enabled": false, "tools": []}``; enabled but ``user`` lacks the permission:
    ``{"enabled": true, "tools": []}``.
    """
    enabled = ai_services_enabled()
    tools = [tool.definition() for tool in registry.all()] if enabled and user_can_call_tools(user) else []
    return {"enabled": enabled, "tools": tools}


def request_id_from(value: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is a sane token, else a new random id (32 hex chars)."""
    if value and _REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex


def tool_call_check_user_rate(*, user) -> RateUsage | None:
    """Charge one call by ``user`` (any tool, any outcome) against ``USER_CALL_LIMITS``.

    Returns the usage (for the ``X-RateLimit-*`` headers), or ``None`` when rate limiting is off.

    Raises:
        syndarix.api.ratelimit.RateLimited: a limit is exceeded (429, ``retry_after`` in seconds).
    """
    return check_sliding_window(f"aiservices.tools_call:user:{user.pk}", USER_CALL_LIMITS)


def tool_call_check_rate(*, user, tool_name: str) -> RateUsage | None:
    """Charge one call of ``tool_name`` by ``user`` against ``TOOL_CALL_LIMITS`` (exact sliding windows).

    Returns the usage of both windows, or ``None`` when rate limiting is off.

    Raises:
        syndarix.api.ratelimit.RateLimited: a limit is exceeded (429, ``retry_after`` in seconds
            until the oldest call of the full window leaves it).
    """
    return check_sliding_window(f"aiservices.tools_call:user:{user.pk}:tool:{tool_name}", TOOL_CALL_LIMITS)


def tool_resolve(*, name: str) -> Tool:
    """The registered tool called ``name``. Raises ``UnknownTool`` (400 ``unknown_tool``, field ``name``)."""
    tool = registry.get(name)
    if tool is None:
        raise UnknownTool(name, registry.names())
    return tool


def tool_validate(*, name: str, arguments: Any) -> tuple[Tool, dict[str, Any]]:
    """Resolve ``name`` and check ``arguments`` without calling anything or recording.

    Raises ``UnknownTool`` or ``InvalidArguments`` (400, one problem per field).
    """
    tool = tool_resolve(name=name)
    return tool, tool.validate_arguments(arguments)


def tool_call(
    *,
    user,
    name: str,
    arguments: Any,
    request_id: str | None = None,
    rate_limit: bool = False,
) -> ToolResult:
    """Run the tool ``name`` with ``arguments`` for ``user`` and record the call.

    Order of the checks, each refusing before the next runs:

    1. with ``rate_limit``, the per-user limit (``USER_CALL_LIMITS``, 429). Not recorded: it is what
       bounds the records a user can cause.
    2. the configuration (503 ``ai_services_disabled``);
    3. the tool name (400 ``unknown_tool``);
    4. with ``rate_limit``, the per-user-and-tool limit (``TOOL_CALL_LIMITS``, 429);
    5. the arguments (400 ``invalid_arguments``);
    6. the tool runs.

    Refusals by 2-5 are recorded as one ``rejected`` ``AIServiceCall`` and re-raised; a call that
    ran is recorded as ``ok`` or ``tool_error``. An unexpected exception anywhere (a defect, Redis
    unreachable) is logged with its traceback, recorded as ``tool_error`` and answered as an
    ``is_error`` result, so nothing escapes unrecorded. The caller checks the permission
    (``user_can_call_tools``).

    Args:
        user: the caller, or ``None`` for a management command.
        arguments: the raw ``arguments`` object of the request.
        request_id: the id of this call; the trace id when the upstream gives none.
        rate_limit: apply the per-user and per-tool limits (``user`` must be a saved user).

    Returns a ``ToolResult``; ``trace_id`` is always set, and ``rate_limit`` holds the usage of
    every window charged (for ``X-RateLimit-*`` headers) when limits apply. Upstream failures and
    refinements that break the rules are ``is_error`` results, never exceptions.

    Raises:
        RateLimited (429), AIServicesDisabled (503), UnknownTool (400), InvalidArguments (400).
    """
    started = time.monotonic()
    request_id = request_id or uuid.uuid4().hex
    if rate_limit and getattr(user, "pk", None) is None:
        raise ValueError("rate_limit needs a saved user.")
    usage: RateUsage | None = None
    tool: Tool | None = None
    try:
        if rate_limit:
            usage = tool_call_check_user_rate(user=user)
    except Ratelimited:
        raise  # not recorded, by design (step 1)
    except Exception as exc:  # noqa: BLE001 (recorded and answered, see the docstring)
        return _unexpected(exc, user=user, tool=name, started=started, request_id=request_id)
    try:
        ensure_ai_services_enabled()
        tool = tool_resolve(name=name)
        if rate_limit:
            tool_usage = tool_call_check_rate(user=user, tool_name=tool.name)
            usage = usage + tool_usage if usage and tool_usage else usage or tool_usage
        arguments = tool.validate_arguments(arguments)
    except (DomainError, InvalidArguments, Ratelimited) as exc:
        _record(
            user=user, tool=tool.name if tool else name, outcome=CallOutcome.REJECTED, started=started,
            trace_id=request_id, error_code=_code(exc), error_message=_message(exc),
        )
        raise
    except Exception as exc:  # noqa: BLE001 (recorded and answered, see the docstring)
        return _unexpected(exc, user=user, tool=tool.name if tool else name, started=started, request_id=request_id)
    try:
        result = tool.run(arguments, request_id=request_id)
    except Exception:  # a defect in a tool: answer an isError result (never a 500) and keep the traceback
        logger.exception("AI tool %s failed request_id=%s", tool.name, request_id)
        result = ToolResult(text="The tool failed unexpectedly.", is_error=True, error_code="tool_failure")
    result.trace_id = result.trace_id or request_id
    result.rate_limit = usage
    _record(
        user=user, tool=tool.name, outcome=CallOutcome.TOOL_ERROR if result.is_error else CallOutcome.OK,
        started=started, trace_id=result.trace_id, tokens=result.tokens, provider=result.provider,
        error_code=result.error_code if result.is_error else "", error_message=result.text if result.is_error else "",
    )
    return result


def _unexpected(exc: Exception, *, user, tool: str, started: float, request_id: str) -> ToolResult:
    """Log, record and answer an exception nobody expected before the tool ran (never a 500)."""
    logger.error("AI tool call %s failed before running request_id=%s", tool, request_id, exc_info=exc)
    result = ToolResult(
        text="The call failed unexpectedly.", is_error=True, trace_id=request_id, error_code="internal_error"
    )
    _record(
        user=user, tool=tool, outcome=CallOutcome.TOOL_ERROR, started=started, trace_id=request_id,
        error_code=result.error_code, error_message=result.text,
    )
    return result


def _code(exc: Exception) -> str:
    if isinstance(exc, InvalidArguments):
        return "invalid_arguments"
    if isinstance(exc, Ratelimited):
        return "rate_limited"
    return getattr(exc, "code", "") or type(exc).__name__


def _message(exc: Exception) -> str:
    if isinstance(exc, Ratelimited):
        return f"Rate limit exceeded; retry in {getattr(exc, 'retry_after', '?')} s."
    return getattr(exc, "message", None) or str(exc)


def _record(
    *, user, tool: str, outcome: str, started: float, trace_id: str, tokens: int | None = None, provider: str = "",
    error_code: str = "", error_message: str = "",
) -> AIServiceCall:
    user = user if user is not None and getattr(user, "is_authenticated", False) else None
    return AIServiceCall.objects.create(
        user=user,
        tool=tool[:200],
        outcome=outcome,
        provider=provider,
        duration_ms=max(0, round((time.monotonic() - started) * 1000)),
        trace_id=trace_id[:200],
        tokens=tokens,
        error_code=error_code[:50],
        error_message=error_message,
    )
