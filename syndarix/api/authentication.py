"""API token authentication: django-rest-knox tokens under the ``Token`` and ``Bearer`` schemes.

Tokens are knox ``AuthToken`` rows: only a SHA-512 digest and the first 15 characters (``token_key``,
the token's public identifier) are stored, each login creates its own token, and each expires after
``AUTH_TOKEN_TTL_HOURS`` (``REST_KNOX["TOKEN_TTL"]``). ``Authorization: Token <token>`` is the
documented scheme; ``Authorization: Bearer <token>`` (RFC 6750, what MCP and OAuth clients send) is
accepted too. ``KEYWORDS`` is the one place that lists them. ``authenticate_token`` applies the same
check to a plain Django request, for endpoints outside DRF's views (the MCP server).
"""

from __future__ import annotations

from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from rest_framework import exceptions
from rest_framework.authentication import get_authorization_header
from rest_framework.request import Request

#: Authorization schemes that carry an API token; the first is the one announced in ``WWW-Authenticate``.
KEYWORDS = ("Token", "Bearer")


class TokenAuthentication(KnoxTokenAuthentication):
    """Knox token authentication under every scheme of ``KEYWORDS`` (case-insensitive).

    ``request.user`` is the token's user, ``request.auth`` its ``knox.models.AuthToken``. A header of
    another scheme is left to the other authentication classes (``None``). Raises ``AuthenticationFailed``
    (401) for a missing, malformed, unknown, revoked or expired token, or an inactive user; an expired
    token is deleted on first use. One query per request (the token with its user).
    """

    def authenticate(self, request):
        auth = get_authorization_header(request).split()
        if not auth or auth[0].lower() not in {keyword.lower().encode() for keyword in KEYWORDS}:
            return None
        if len(auth) == 1:
            raise exceptions.AuthenticationFailed(_("Invalid token header. No credentials provided."))
        if len(auth) > 2:
            raise exceptions.AuthenticationFailed(_("Invalid token header. Token string should not contain spaces."))
        try:
            auth[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        return self.authenticate_credentials(auth[1])

    def authenticate_header(self, request) -> str:
        return KEYWORDS[0]

    def _cleanup_token(self, auth_token) -> bool:
        """Delete ``auth_token`` when it has expired and say so.

        Knox also sweeps every other expired token of the user here, a query on every request; that sweep
        happens at login instead (``projects.services.auth_token_create``).
        """
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            auth_token.delete()
            return True
        return False


def authenticate_token(request: HttpRequest):
    """The user named by the API token in ``request``'s ``Authorization`` header (any scheme of ``KEYWORDS``).

    Returns the user, or ``None`` when the request carries no token (no header, or another scheme).

    Raises:
        rest_framework.exceptions.AuthenticationFailed: the token is malformed, unknown, revoked or expired, or its
            user is inactive.
    """
    found = TokenAuthentication().authenticate(Request(request))
    return found[0] if found else None


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    """The OpenAPI security scheme of ``TokenAuthentication`` (``tokenAuth``: ``Authorization: Token <token>``)."""

    target_class = TokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        definition = build_bearer_security_scheme_object(header_name="Authorization", token_prefix=KEYWORDS[0])
        definition["description"] = (
            f"{definition.get('description', '')} `Bearer <token>` is accepted too. Get a token from "
            "`POST /api/v1/auth/token`."
        ).strip()
        return definition
