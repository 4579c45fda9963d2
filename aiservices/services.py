"""AI services: status, tool calls and their records (the one path for the API, admin and command).

Contract: agenta-contracts.md part A (status and ``tools/call`` shapes, the refine-prompt tool),
made stricter here: a permission, per-user rate limits, output validation and a record of every call.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from django_ratelimit.exceptions import Ratelimited

from syndarix.api.ratelimit import check_rate
from syndarix.exceptions import DomainError

from .choices import CallOutcome
from .exceptions import AIServicesDisabled, InvalidArguments, UnknownTool
from .models import EDIT_WORKFLOWS_PERMISSION, AIServiceCall
from .providers import get_provider
from .tools import Tool, ToolResult, registry

logger = logging.getLogger(__name__)

#: Per user and tool: at most 10 calls in a 10-second burst and 30 per minute (fixed windows).
TOOL_CALL_RATES = ("10/10s", "30/m")

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


def tool_call_check_rate(*, request, tool_name: str) -> dict[str, Any] | None:
    """Count one call of ``tool_name`` by the request's user against ``TOOL_CALL_RATES``.

    The burst limit is checked first, so a call refused by it does not use the per-minute budget.
    Returns the usage (``count``, ``limit``, ``time_left`` s) of the limit with the fewest calls
    left, for the ``X-RateLimit-*`` headers, or ``None`` when rate limiting is off.

    Raises:
        syndarix.api.ratelimit.RateLimited: a limit is exceeded (429, ``retry_after`` in seconds).
    """
    usages = [
        check_rate(request, group=f"aiservices.tools_call:{tool_name}:{rate}", rate=rate) for rate in TOOL_CALL_RATES
    ]
    usages = [u for u in usages if u]
    return min(usages, key=lambda u: u["limit"] - u["count"]) if usages else None


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
    throttle: Callable[[str], Any] | None = None,
) -> ToolResult:
    """Run the tool ``name`` with ``arguments`` for ``user`` and record the call.

    Order: the configuration (503), the tool name (400), ``throttle(tool_name)`` (the caller's rate
    limit, 429), the arguments (400), then the tool. Every call is recorded as one
    ``AIServiceCall``: ``rejected`` when refused before running (and the exception re-raised),
    ``ok`` or ``tool_error`` after. The caller checks the permission (``user_can_call_tools``).

    Args:
        user: the caller, or ``None`` for a management command.
        arguments: the raw ``arguments`` object of the request.
        request_id: the id of this call; the trace id when the upstream gives none.
        throttle: called with the tool's name before the arguments are checked; raises to refuse.

    Returns a ``ToolResult``; ``trace_id`` is always set. Upstream failures and refinements that
    break the rules are ``is_error`` results, never exceptions.

    Raises:
        AIServicesDisabled (503), UnknownTool (400), InvalidArguments (400), RateLimited (429).
    """
    started = time.monotonic()
    request_id = request_id or uuid.uuid4().hex
    try:
        ensure_ai_services_enabled()
        tool = tool_resolve(name=name)
        if throttle is not None:
            throttle(tool.name)
        arguments = tool.validate_arguments(arguments)
    except (DomainError, InvalidArguments, Ratelimited) as exc:
        _record(
            user=user, tool=name, outcome=CallOutcome.REJECTED, started=started, trace_id=request_id,
            error_code=_code(exc), error_message=_message(exc),
        )
        raise
    try:
        result = tool.run(arguments, request_id=request_id)
    except Exception:  # a defect in a tool: answer an isError result (never a 500) and keep the traceback
        logger.exception("AI tool %s failed request_id=%s", tool.name, request_id)
        result = ToolResult(text="The tool failed unexpectedly.", is_error=True, error_code="tool_failure")
    result.trace_id = result.trace_id or request_id
    _record(
        user=user, tool=tool.name, outcome=CallOutcome.TOOL_ERROR if result.is_error else CallOutcome.OK,
        started=started, trace_id=result.trace_id, tokens=result.tokens, provider=result.provider,
        error_code=result.error_code if result.is_error else "", error_message=result.text if result.is_error else "",
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
