"""API token authentication: django-rest-knox tokens under the ``Token`` and ``Bearer`` schemes.

Tokens are knox ``AuthToken`` rows: only a SHA-512 digest and the first 15 characters (``token_key``,
the token's public identifier) are stored, each login creates its own token, and each expires after
``AUTH_TOKEN_TTL_HOURS`` (``REST_KNOX["TOKEN_TTL"]``). ``Authorization: Token <token>`` is the
documented scheme; ``Authorization: Bearer <token>`` (RFC 6750, what MCP and OAuth clients send) is
accepted too. ``KEYWORDS`` is the one place that lists them. ``authenticate_token`` applies the same
check to a plain Django request, for endpoints outside DRF's views (the MCP server).

A token found valid is kept in the shared cache (``syndarix.cache``, keyed by its digest, never by the token) with
its user's fields, so a token in steady use costs a cache lookup instead of a query. The entry is invalidated
whenever it could change the answer: the token is saved or deleted (revoked, logout, logout everywhere, a password
change, an expired token swept, its user deleted) or its user is saved (deactivated, password or flags changed; not
a ``last_login`` stamp). An entry also stops at the token's expiry, which is checked again on every hit
(``invalidate_token_entries``, connected by ``syndarix.apps.ApiTokensConfig``).
"""

from __future__ import annotations

import binascii
from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.crypto import hash_token
from knox.models import AuthToken
from rest_framework import exceptions
from rest_framework.authentication import get_authorization_header
from rest_framework.request import Request

from syndarix.cache import cache_fill, cache_get_many, cache_invalidate

#: Authorization schemes that carry an API token; the first is the one announced in ``WWW-Authenticate``.
KEYWORDS = ("Token", "Bearer")


class TokenAuthentication(KnoxTokenAuthentication):
    """Knox token authentication under every scheme of ``KEYWORDS`` (case-insensitive).

    ``request.user`` is the token's user, ``request.auth`` its ``knox.models.AuthToken``. A header of
    another scheme is left to the other authentication classes (``None``). Raises ``AuthenticationFailed``
    (401) for a missing, malformed, unknown, revoked or expired token, or an inactive user; an expired
    token is deleted on first use. A cache lookup per request, and a query (the token with its user) when the
    token is not in the cache.
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
        return self.authenticate_credentials(auth[1], view=(request.parser_context or {}).get("view"))

    def authenticate_credentials(self, token: bytes, view=None) -> tuple[Any, AuthToken]:
        """``(user, token row)`` of ``token``, from the cache when it holds the token, else from the database (knox's
        check, then the result is cached). The user from the cache has every field but ``password`` (deferred:
        read from the database if anything asks for it).

        A ``view`` with a ``token_cache_keys(token_digest)`` method gets the entries of those keys looked up in the
        same round trip, as ``view.cache_entries`` (``{key: value}``, found entries only): the project access of
        ``projects.permissions.ProjectScopedMixin``.

        Raises:
            rest_framework.exceptions.AuthenticationFailed: unknown, revoked or expired token; inactive user.
        """
        try:
            digest = hash_token(token.decode())
        except (TypeError, ValueError, binascii.Error):
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        key = token_cache_key(digest)
        more = view.token_cache_keys(digest) if hasattr(view, "token_cache_keys") else ()
        entries = cache_get_many([key, *more])
        if more:
            view.cache_entries = entries
        entry = entries.get(key)
        found = _from_entry(digest, entry) if entry is not None else None
        if found is not None:
            return found
        user, auth_token = super().authenticate_credentials(token)
        cache_fill(key, _entry(auth_token))
        return user, auth_token

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


def token_cache_key(digest: str) -> str:
    """The cache key of the token whose knox digest (SHA-512, hex) is ``digest``."""
    return f"auth.token:{digest}"


@cache
def _user_fields() -> tuple[str, ...]:
    """The user fields an entry keeps: every concrete field but the password hash, which stays in the database."""
    return tuple(f.attname for f in get_user_model()._meta.concrete_fields if f.attname != "password")


def _entry(auth_token: AuthToken) -> tuple:
    user = auth_token.user
    names = _user_fields()
    return (auth_token.token_key, auth_token.created, auth_token.expiry, names,
            tuple(getattr(user, name) for name in names))


def _from_entry(digest: str, entry: tuple) -> tuple[Any, AuthToken] | None:
    """``(user, token)`` rebuilt from a cache entry, or ``None`` when the entry cannot answer (expired token,
    inactive user, or the user model's fields changed since it was stored): the database decides then."""
    token_key, created, expiry, names, values = entry
    if (expiry is not None and expiry < timezone.now()) or names != _user_fields():
        return None
    user = get_user_model().from_db(DEFAULT_DB_ALIAS, list(names), list(values))
    if not user.is_active:
        return None
    auth_token = AuthToken.from_db(DEFAULT_DB_ALIAS, ["digest", "token_key", "user_id", "created", "expiry"],
                                   [digest, token_key, user.pk, created, expiry])
    auth_token.user = user
    return user, auth_token


def invalidate_token_entries(sender, instance, **kwargs) -> None:
    """Signal receiver: drop the cache entries a saved or deleted token, or a saved user, invalidates.

    Connected to ``post_save`` and ``post_delete`` of ``AuthToken`` (a deleted user's tokens go with it, each
    through this) and ``post_save`` of the user model. A new token or user has no entry; saving only ``last_login``
    (a login) invalidates nothing.

    Raises:
        syndarix.exceptions.DependencyUnavailable: the cache is unreachable (the change is refused, 503).
    """
    if kwargs.get("created"):
        return
    if isinstance(instance, AuthToken):
        cache_invalidate([token_cache_key(instance.digest)])
        return
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return
    digests = AuthToken.objects.filter(user_id=instance.pk).values_list("digest", flat=True)
    cache_invalidate([token_cache_key(digest) for digest in digests])


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
