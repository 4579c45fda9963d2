"""The one place where errors become HTTP responses.

Every error leaves the API as ``{"success": false, "errors": [{"code", "message", "field", ...}]}``.
Views and serializers raise; they never build this body themselves.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404
from django_fsm import ConcurrentTransition
from django_ratelimit.exceptions import Ratelimited
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from syndarix.exceptions import STALE_WRITE_MESSAGE, DomainError, ServiceUnavailable

from .outages import log_outage, lost_dependency

logger = logging.getLogger(__name__)

_DRF_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.ParseError: "parse_error",
    exceptions.Throttled: "rate_limited",
}


def error_body(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the error envelope for a list of ``{"code", "message", "field"}`` objects."""
    return {"success": False, "errors": errors}


def domain_error_body(exc: DomainError) -> dict[str, Any]:
    """The error envelope of one ``DomainError``: its code, message and field, plus its ``extra`` keys."""
    return error_body([{"code": exc.code, "message": exc.message, "field": exc.field, **exc.extra}])


def _flatten(detail: Any, field: str | None = None) -> list[dict[str, Any]]:
    """Flatten DRF's nested ``ValidationError.detail`` into one error object per message.

    Nested fields join with dots (``config.retries``); list positions with their index.
    """
    if isinstance(detail, dict):
        out: list[dict[str, Any]] = []
        for key, value in detail.items():
            name = None if key in ("non_field_errors", "__all__") else str(key)
            out.extend(_flatten(value, f"{field}.{name}" if field and name else (name or field)))
        return out
    if isinstance(detail, list):
        out = []
        for index, value in enumerate(detail):
            if isinstance(value, dict | list):
                out.extend(_flatten(value, f"{field}.{index}" if field else str(index)))
            else:
                out.extend(_flatten(value, field))
        return out
    code = getattr(detail, "code", None) or "invalid"
    return [{"code": code, "message": str(detail), "field": field}]


def _retry_after(exc: Exception) -> int:
    return max(1, int(getattr(exc, "retry_after", None) or getattr(exc, "wait", None) or 60))


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF ``EXCEPTION_HANDLER``: map any known exception to the error envelope.

    Mapping: DRF/Django validation → 400 (one error per field message); authentication → 401;
    permission → 403; not found → 404; ``DomainError`` → its own status and code; stale FSM writes
    (``ConcurrentTransition``) → 409 ``conflict``; a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE``
    (Django's ``RequestDataTooBig``) → 413 ``payload_too_large``; deleting a row others still refer to
    (``ProtectedError``) → 409 ``protected``; django-ratelimit's ``Ratelimited`` (a 403 by default) and DRF
    ``Throttled`` → 429 ``rate_limited`` with ``Retry-After`` (seconds) and, when the refusing check reported
    them, ``X-RateLimit-*``; a lost database or cache (``syndarix.api.outages``) → 503 ``service_unavailable``
    naming the ``dependency``, with ``Retry-After``.
    Unknown exceptions return ``None`` so Django logs them and answers 500.
    """
    headers: dict[str, str] = {}
    if isinstance(exc, Ratelimited | exceptions.Throttled):
        retry_after = _retry_after(exc)
        headers["Retry-After"] = str(retry_after)
        if hasattr(exc, "rate_limit_headers"):
            headers.update(exc.rate_limit_headers())
        body = error_body(
            [{"code": "rate_limited", "message": f"Too many requests; retry in {retry_after} s.", "field": None}]
        )
        return Response(body, status=status.HTTP_429_TOO_MANY_REQUESTS, headers=headers)

    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        error = {
            "code": "payload_too_large",
            "message": f"The request body exceeds the limit of {limit} bytes (DATA_UPLOAD_MAX_MEMORY_SIZE).",
            "field": None,
            "max_bytes": limit,
        }
        return Response(error_body([error]), status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)

    outage = lost_dependency(exc)
    if outage is not None:
        if outage is not exc:
            log_outage(outage, exc, context.get("request"))
        exc = outage

    if isinstance(exc, DomainError):
        set_rollback()
        if isinstance(exc, ServiceUnavailable):
            headers["Retry-After"] = str(exc.retry_after)
        return Response(domain_error_body(exc), status=exc.status_code, headers=headers)

    if isinstance(exc, ConcurrentTransition):
        set_rollback()
        error = {"code": "conflict", "message": STALE_WRITE_MESSAGE, "field": None}
        return Response(error_body([error]), status=status.HTTP_409_CONFLICT)

    if isinstance(exc, ProtectedError | RestrictedError):
        set_rollback()
        blockers = exc.protected_objects if isinstance(exc, ProtectedError) else exc.restricted_objects
        count = len(blockers)
        names = {str(type(obj)._meta.verbose_name_plural) for obj in blockers}
        message = f"Cannot delete: {count} {', '.join(sorted(names)) or 'objects'} still refer to it."
        error = {"code": "protected", "message": message, "field": None}
        return Response(error_body([error]), status=status.HTTP_409_CONFLICT)

    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail=detail)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    if not isinstance(exc, exceptions.APIException):
        return None

    set_rollback()
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
    else:
        code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), None)
        errors = [{"code": code or exc.default_code, "message": str(exc.detail), "field": None}]
    return Response(error_body(errors), status=exc.status_code, headers=headers)
