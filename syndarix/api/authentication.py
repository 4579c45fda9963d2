"""Token authentication for endpoints outside DRF's views (the MCP server), with the API's own tokens.

The API's token class is DRF's configured one: the first of ``REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]``
that is neither session nor HTTP Basic authentication. ``bearer_authenticate`` accepts its tokens under
the standard ``Bearer`` scheme (RFC 6750, what MCP clients send) as well as under the class's own keyword,
and delegates the check to the class, so tokens, expiry and revocation follow the API exactly.
"""

from __future__ import annotations

import copy

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from rest_framework.authentication import BaseAuthentication, BasicAuthentication, SessionAuthentication
from rest_framework.request import Request
from rest_framework.settings import api_settings

BEARER = "Bearer"


def token_authentication_class() -> type[BaseAuthentication]:
    """DRF's configured token authentication class.

    Raises ``ImproperlyConfigured`` when ``DEFAULT_AUTHENTICATION_CLASSES`` lists none.
    """
    for authentication in api_settings.DEFAULT_AUTHENTICATION_CLASSES:
        if not issubclass(authentication, SessionAuthentication | BasicAuthentication):
            return authentication
    raise ImproperlyConfigured("REST_FRAMEWORK['DEFAULT_AUTHENTICATION_CLASSES'] has no token authentication.")


def bearer_authenticate(request: HttpRequest):
    """The user ``request``'s ``Authorization: Bearer <token>`` (or ``<keyword> <token>``) header names.

    Returns the user, or ``None`` when the request carries no token.

    Raises:
        rest_framework.exceptions.AuthenticationFailed: the token is unknown, expired, or its user inactive.
    """
    authentication = token_authentication_class()()
    keyword = authentication.authenticate_header(request) or BEARER
    scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() == BEARER.lower():
        # The class reads its own keyword only: hand it a copy of the request that names it.
        request = copy.copy(request)
        request.META = {**request.META, "HTTP_AUTHORIZATION": f"{keyword} {credentials}"}
        request.__dict__.pop("headers", None)  # HttpRequest.headers is cached from META
    found = authentication.authenticate(Request(request))
    return found[0] if found else None
