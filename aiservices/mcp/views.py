"""``/mcp``: the MCP server's Streamable HTTP transport (MCP spec 2025-11-25, "Transports › Streamable HTTP").

One endpoint:

- ``POST`` one JSON-RPC message. A request is answered with one JSON response (``application/json``;
  this server never streams, which the spec allows); a notification or a response with ``202 Accepted``
  and no body. ``initialize`` starts a session and answers its id in ``Mcp-Session-Id``; every other
  message must carry it (400 without, 404 for an unknown, expired or ended session: the client then
  initializes again) and, when sent, an ``MCP-Protocol-Version`` this server speaks (else 400).
- ``DELETE`` with ``Mcp-Session-Id`` ends the session (204).
- ``GET`` is 405: the server offers no stream of its own messages.

Every request needs an API token (``Authorization: Bearer <token>``; ``Token <token>`` works too),
else 401 with ``WWW-Authenticate: Bearer``. A request from a browser page of another origin (an
``Origin`` header whose host, port aside, is not in ``ALLOWED_HOSTS``, matched as Django matches the ``Host``
header) is refused with 403, against DNS rebinding. A lost database or cache is a JSON-RPC error too (``-32603``,
HTTP 503 with ``Retry-After``, ``data.dependency`` naming what is lost), never a page of text.
Malformed input is answered with the JSON-RPC error and the HTTP status the spec and the official SDK use:
not JSON ``-32700`` (400); a batch (removed from MCP in 2025-06-18), a non-object body or an invalid
envelope ``-32600`` (400). Errors of the protocol itself are in ``aiservices.mcp.server``.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import mcp_types as types
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.request import split_domain_port, validate_host
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from pydantic import ValidationError
from rest_framework.exceptions import AuthenticationFailed

from syndarix.api.authentication import authenticate_token
from syndarix.api.outages import log_outage, lost_dependency
from syndarix.api.ratelimit import RateLimited, check_user_rate

from . import server
from .sessions import Session, session_delete, session_get

logger = logging.getLogger(__name__)

SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
#: ``initialize`` starts a session in the shared cache: per user, at most this many (django-ratelimit rate).
INITIALIZE_RATE = "30/m"


class TransportError(Exception):
    """An HTTP-level refusal: ``status``, the JSON-RPC ``code`` and ``message`` of its body, extra ``headers``."""

    def __init__(self, status: HTTPStatus, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


@method_decorator(csrf_exempt, name="dispatch")  # token authentication only: no cookie is ever honoured here
class MCPView(View):
    """The Streamable HTTP endpoint of the MCP server (see the module docstring)."""

    http_method_names = ["post", "delete"]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        request.mcp_request_id = None  # the JSON-RPC id, once the body is read
        try:
            self.check_origin(request)
            if request.method not in ("POST", "DELETE"):
                raise TransportError(HTTPStatus.METHOD_NOT_ALLOWED, types.INVALID_REQUEST,
                                     "Method not allowed: POST JSON-RPC messages; DELETE ends a session.",
                                     {"Allow": "POST, DELETE"})
            request.mcp_user = self.authenticate(request)
            return super().dispatch(request, *args, **kwargs)
        except TransportError as exc:
            return error_response(None, exc.code, exc.message, status=exc.status, headers=exc.headers)
        except Exception as exc:
            outage = lost_dependency(exc)
            if outage is None:
                raise
            log_outage(outage, exc, request)
            return error_response(
                request.mcp_request_id, types.INTERNAL_ERROR, f"Service unavailable: {outage.message}",
                data={"dependency": outage.dependency}, status=HTTPStatus.SERVICE_UNAVAILABLE,
                headers={"Retry-After": str(outage.retry_after)},
            )

    def post(self, request: HttpRequest) -> HttpResponse:
        user = request.mcp_user
        self.check_media_types(request)
        message = self.parse(request)
        if isinstance(message, types.JSONRPCRequest):
            request.mcp_request_id = message.id
        if isinstance(message, types.JSONRPCRequest) and message.method == "initialize":
            return self.initialize(request, message)
        session = self.session(request)
        if not isinstance(message, types.JSONRPCRequest):
            if isinstance(message, types.JSONRPCNotification):
                server.handle_notification(message.method, message.params, session=session)
            return HttpResponse(status=HTTPStatus.ACCEPTED)  # a notification, or a response to nothing we asked
        try:
            result = server.handle_request(message.method, message.params, user=user, session=session)
        except server.ProtocolError as exc:
            return error_response(message.id, exc.error.code, exc.error.message, data=exc.error.data)
        except Exception as exc:
            if lost_dependency(exc) is not None:
                raise  # 503 in dispatch
            logger.exception("MCP %s failed", message.method)
            return error_response(message.id, types.INTERNAL_ERROR, "Internal error.",
                                  status=HTTPStatus.INTERNAL_SERVER_ERROR)
        return result_response(message.id, result)

    def delete(self, request: HttpRequest) -> HttpResponse:
        session_delete(self.session(request))
        return HttpResponse(status=HTTPStatus.NO_CONTENT)

    def initialize(self, request: HttpRequest, message: types.JSONRPCRequest) -> HttpResponse:
        try:
            check_user_rate(request.mcp_user, group=f"{__name__}.initialize", rate=INITIALIZE_RATE)
        except RateLimited as exc:
            return error_response(
                message.id, types.INVALID_REQUEST, f"Too many new sessions; retry in {exc.retry_after} s.",
                status=HTTPStatus.TOO_MANY_REQUESTS, headers={"Retry-After": str(exc.retry_after)},
            )
        try:
            result, session = server.initialize(message.params, user=request.mcp_user)
        except server.ProtocolError as exc:
            return error_response(message.id, exc.error.code, exc.error.message)
        return result_response(message.id, result, headers={SESSION_HEADER: session.id})

    # --- Transport checks ---------------------------------------------------------------------------------

    @staticmethod
    def check_origin(request: HttpRequest) -> None:
        """403 for an ``Origin`` whose host is not served here (DNS rebinding; MCP spec, "Security Warning")."""
        origin = request.headers.get("Origin")
        if origin is None or origin in settings.CSRF_TRUSTED_ORIGINS:
            return
        parts = urlsplit(origin)
        host, _port = split_domain_port(parts.netloc)  # as Django reads the Host header ("" when malformed)
        allowed = settings.ALLOWED_HOSTS or ([".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
        if parts.scheme not in ("http", "https") or not host or not validate_host(host, allowed):
            raise TransportError(HTTPStatus.FORBIDDEN, types.INVALID_REQUEST, f"Forbidden: origin {origin!r}.")

    @staticmethod
    def authenticate(request: HttpRequest):
        """The user of the request's API token; 401 with ``WWW-Authenticate: Bearer`` without a valid one."""
        try:
            user = authenticate_token(request)
        except AuthenticationFailed as exc:
            raise TransportError(HTTPStatus.UNAUTHORIZED, types.INVALID_REQUEST, f"Unauthorized: {exc.detail}",
                                 {"WWW-Authenticate": 'Bearer realm="syndarix", error="invalid_token"'}) from None
        if user is None:
            raise TransportError(HTTPStatus.UNAUTHORIZED, types.INVALID_REQUEST,
                                 "Unauthorized: send an API token as 'Authorization: Bearer <token>'.",
                                 {"WWW-Authenticate": 'Bearer realm="syndarix"'})
        return user

    @staticmethod
    def check_media_types(request: HttpRequest) -> None:
        """406 unless the client accepts JSON; 415 unless it sends JSON."""
        accepted = {part.split(";")[0].strip().lower() for part in request.headers.get("Accept", "").split(",")}
        if not accepted & {"application/json", "application/*", "*/*"}:
            raise TransportError(HTTPStatus.NOT_ACCEPTABLE, types.INVALID_REQUEST,
                                 "Not Acceptable: the client must accept application/json (and text/event-stream).")
        if request.content_type != "application/json":
            raise TransportError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, types.INVALID_REQUEST,
                                 "Unsupported Media Type: Content-Type must be application/json.")

    @staticmethod
    def parse(request: HttpRequest) -> types.JSONRPCMessage:
        """The one JSON-RPC message of the body: -32700 for malformed JSON, -32600 for anything but one message."""
        try:
            data = json.loads(request.body, parse_constant=_refuse_constant)
        except RequestDataTooBig:
            raise TransportError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, types.INVALID_REQUEST,
                                 f"The body exceeds {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.") from None
        except (ValueError, RecursionError) as exc:
            raise TransportError(HTTPStatus.BAD_REQUEST, types.PARSE_ERROR, f"Parse error: {exc}") from None
        if isinstance(data, list):
            raise TransportError(HTTPStatus.BAD_REQUEST, types.INVALID_REQUEST,
                                 "Invalid Request: JSON-RPC batches are not supported (MCP 2025-06-18 and later); "
                                 "send one message per request.")
        if not isinstance(data, dict):
            raise TransportError(HTTPStatus.BAD_REQUEST, types.INVALID_REQUEST,
                                 "Invalid Request: the body must be one JSON-RPC message object.")
        try:
            if "method" in data:  # a request when it has an id (which must then be an integer or a string)
                model = types.JSONRPCRequest if "id" in data else types.JSONRPCNotification
                return model.model_validate(data)
            return types.jsonrpc_message_adapter.validate_python(data, by_name=False)
        except ValidationError:
            raise TransportError(HTTPStatus.BAD_REQUEST, types.INVALID_REQUEST,
                                 "Invalid Request: not a JSON-RPC 2.0 message (jsonrpc '2.0', a method or a result, "
                                 "an integer or string id).") from None

    @staticmethod
    def session(request: HttpRequest) -> Session:
        """The request's live session: 400 without ``Mcp-Session-Id``, 404 when unknown, expired or ended;
        400 for an ``MCP-Protocol-Version`` other than a supported one."""
        session_id = request.headers.get(SESSION_HEADER)
        if not session_id:
            raise TransportError(HTTPStatus.BAD_REQUEST, types.INVALID_REQUEST,
                                 f"Bad Request: missing {SESSION_HEADER}; send initialize first.")
        session = session_get(session_id, user=request.mcp_user)
        if session is None:
            raise TransportError(HTTPStatus.NOT_FOUND, types.INVALID_REQUEST,
                                 "Not Found: unknown or expired session; initialize a new one.")
        version = request.headers.get(VERSION_HEADER)
        if version is not None and version not in server.SUPPORTED_PROTOCOL_VERSIONS:
            raise TransportError(HTTPStatus.BAD_REQUEST, types.INVALID_REQUEST,
                                 f"Bad Request: unsupported {VERSION_HEADER} {version!r}; supported: "
                                 f"{', '.join(server.SUPPORTED_PROTOCOL_VERSIONS)}.")
        return session


def result_response(request_id: types.RequestId, result: dict[str, Any], *,
                    headers: dict[str, str] | None = None) -> JsonResponse:
    """A JSON-RPC success answer (200)."""
    body = types.JSONRPCResponse(jsonrpc="2.0", id=request_id, result=result)
    return JsonResponse(body.model_dump(mode="json", by_alias=True), headers=headers)


def error_response(request_id: types.RequestId | None, code: int, message: str, *, data: Any = None,
                   status: HTTPStatus = HTTPStatus.OK, headers: dict[str, str] | None = None) -> JsonResponse:
    """A JSON-RPC error answer: ``id`` null when the request's id is unknown; ``status`` 200 for a request that
    reached a method (JSON-RPC over HTTP), the transport's status otherwise."""
    error = types.ErrorData(code=code, message=message, data=data)
    body = types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error)
    return JsonResponse(body.model_dump(mode="json", by_alias=True, exclude_none=True) | {"id": request_id},
                        status=status, headers=headers)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
