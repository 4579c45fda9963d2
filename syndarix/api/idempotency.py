"""The ``Idempotency-Key`` request header, read once for every write that supports it."""

from __future__ import annotations

from rest_framework.request import Request

from syndarix.exceptions import InvalidInput

HEADER = "Idempotency-Key"
MAX_LENGTH = 200  # AgentTransition.request_id


def idempotency_key(request: Request) -> str | None:
    """The request's ``Idempotency-Key`` (stripped), or ``None`` when absent or blank.

    Services store it as ``request_id``; repeating it returns the original result.

    Raises:
        InvalidInput: the key is longer than 200 characters, or holds a NUL character (which the
            database cannot store) (400, field ``Idempotency-Key``).
    """
    key = (request.headers.get(HEADER) or "").strip()
    if not key:
        return None
    if len(key) > MAX_LENGTH:
        raise InvalidInput(f"{HEADER} must be at most {MAX_LENGTH} characters.", field=HEADER)
    if "\x00" in key:
        raise InvalidInput(f"{HEADER} must not contain NUL characters.", code="nul_character", field=HEADER)
    return key
