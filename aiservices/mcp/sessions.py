"""MCP sessions (the ``Mcp-Session-Id`` header), kept in the shared cache so every worker and server agrees.

A session is created by ``initialize`` and holds the user it belongs to, the negotiated protocol version
and the client's ``clientInfo``. It expires ``MCP_SESSION_TTL_SECONDS`` after its last use, or when the
client ends it (HTTP ``DELETE``); then its id is unknown, and the transport answers 404 (MCP spec,
"Streamable HTTP › Session Management").
"""

from __future__ import annotations

import re
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache

_KEY = "mcp:session:{}"
#: What a session id may look like (the spec: visible ASCII); anything else is unknown without a cache lookup.
_ID = re.compile(r"^[\x21-\x7e]{1,200}$")


@dataclass(frozen=True)
class Session:
    """One MCP session.

    Attributes:
        id: the ``Mcp-Session-Id`` (43 URL-safe characters, 256 random bits).
        user_id: the primary key of the user who initialized it; nobody else may use it.
        protocol_version: the version negotiated by ``initialize``.
        client_info: the client's ``clientInfo`` (``name``, ``version``, ...).
    """

    id: str
    user_id: Any
    protocol_version: str
    client_info: dict[str, Any] = field(default_factory=dict)


def _ttl() -> int:
    return settings.MCP_SESSION_TTL_SECONDS


def session_create(*, user, protocol_version: str, client_info: dict[str, Any]) -> Session:
    """Start a session for ``user`` and store it for ``MCP_SESSION_TTL_SECONDS``."""
    session = Session(id=secrets.token_urlsafe(32), user_id=user.pk, protocol_version=protocol_version,
                      client_info=client_info)
    cache.set(_KEY.format(session.id), asdict(session), _ttl())
    return session


def session_get(session_id: str, *, user) -> Session | None:
    """The live session ``session_id`` of ``user`` (its expiry pushed back), or ``None``: unknown, expired,
    ended, or another user's."""
    if not _ID.match(session_id or ""):
        return None
    key = _KEY.format(session_id)
    stored = cache.get(key)
    if not stored or stored.get("user_id") != user.pk:
        return None
    cache.touch(key, _ttl())
    return Session(**stored)


def session_delete(session: Session) -> None:
    """End ``session``: later requests with its id are answered 404."""
    cache.delete(_KEY.format(session.id))
