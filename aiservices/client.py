"""HTTP client for upstream LLM services: one ``requests.Session`` per process.

Timeouts come from ``AI_SERVICES_CONNECT_TIMEOUT`` / ``AI_SERVICES_READ_TIMEOUT`` (seconds), read
at each call. Retries (urllib3 ``Retry``) cover only failures where nothing reached the server:
a refused or timed-out connection is retried up to ``CONNECT_RETRIES`` times with a short backoff;
a read timeout, a dropped connection after sending, or any HTTP status is never retried, so a POST
is never sent twice. Every failure becomes an ``UpstreamError`` subclass with a message fit to
show; the upstream body is never echoed (it is logged, truncated, for operators).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .exceptions import UpstreamBadResponse, UpstreamHTTPError, UpstreamTimeout, UpstreamUnreachable

logger = logging.getLogger(__name__)

#: Extra attempts after a connection could not be established (nothing was sent).
CONNECT_RETRIES = 2
#: Backoff factor (seconds) between connection attempts: 0 s, then 0.4 s.
CONNECT_BACKOFF = 0.2
#: Largest upstream answer accepted (bytes); a refined template is at most a few hundred KB.
MAX_RESPONSE_BYTES = 5 * 1024 * 1024
_LOG_BODY_CHARS = 500

_lock = threading.Lock()
_session: requests.Session | None = None
_session_pid: int | None = None


def connect_only_retry() -> Retry:
    """The adapter's retry policy: connection errors only, POST included, no read/status/other retries."""
    return Retry(
        total=CONNECT_RETRIES,
        connect=CONNECT_RETRIES,
        read=False,
        status=0,
        other=0,
        redirect=0,
        backoff_factor=CONNECT_BACKOFF,
        allowed_methods=frozenset({"GET", "POST"}),
        status_forcelist=(),
        raise_on_status=False,
        respect_retry_after_header=False,
    )


def get_session() -> requests.Session:
    """The process's session (created on first use, and again after a fork)."""
    global _session, _session_pid
    pid = os.getpid()
    if _session is None or _session_pid != pid:
        with _lock:
            if _session is None or _session_pid != pid:
                session = requests.Session()
                adapter = HTTPAdapter(max_retries=connect_only_retry(), pool_connections=4, pool_maxsize=16)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                session.headers.update({"Accept": "application/json", "User-Agent": "syndarix-aiservices/1.0"})
                _session, _session_pid = session, pid
    return _session


def reset_session() -> None:
    """Drop the process's session (its pooled connections close); the next call builds a new one."""
    global _session, _session_pid
    with _lock:
        if _session is not None:
            _session.close()
        _session, _session_pid = None, None


@dataclass(frozen=True)
class UpstreamResponse:
    """A parsed 2xx JSON answer: ``body`` (any JSON value) and the response ``headers``."""

    body: Any
    headers: requests.structures.CaseInsensitiveDict


def post_json(url: str, *, payload: dict[str, Any], headers: dict[str, str], request_id: str) -> UpstreamResponse:
    """POST ``payload`` as JSON to ``url`` and return the parsed JSON answer.

    ``request_id`` is sent as ``X-Request-ID`` so the upstream's logs can be correlated.

    Raises:
        UpstreamTimeout: no connection within the connect timeout, or no answer within the read timeout.
        UpstreamUnreachable: the connection failed (after the connect retries) or broke mid-answer.
        UpstreamHTTPError: the upstream answered a non-2xx status.
        UpstreamBadResponse: the answer is not JSON or is too large.
    """
    connect_timeout = settings.AI_SERVICES_CONNECT_TIMEOUT
    read_timeout = settings.AI_SERVICES_READ_TIMEOUT
    try:
        response = get_session().post(
            url,
            json=payload,
            headers={**headers, "Content-Type": "application/json", "X-Request-ID": request_id},
            timeout=(connect_timeout, read_timeout),
            allow_redirects=False,
        )
    except requests.exceptions.ConnectTimeout as exc:
        logger.warning("AI upstream connect timeout url=%s request_id=%s: %s", url, request_id, exc)
        raise UpstreamTimeout(f"Could not connect to the AI service within {connect_timeout:g} s.") from exc
    except requests.exceptions.ReadTimeout as exc:
        logger.warning("AI upstream read timeout url=%s request_id=%s", url, request_id)
        raise UpstreamTimeout(f"The AI service did not answer within {read_timeout:g} s.") from exc
    except requests.exceptions.RequestException as exc:
        logger.warning("AI upstream unreachable url=%s request_id=%s: %s", url, request_id, exc)
        raise UpstreamUnreachable("Could not reach the AI service.") from exc

    if not 200 <= response.status_code < 300:
        logger.warning(
            "AI upstream HTTP %s url=%s request_id=%s body=%r",
            response.status_code, url, request_id, response.text[:_LOG_BODY_CHARS],
        )
        raise UpstreamHTTPError(_status_message(response.status_code))
    if len(response.content) > MAX_RESPONSE_BYTES:
        raise UpstreamBadResponse("The AI service returned an answer that is too large.")
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError) as exc:
        logger.warning(
            "AI upstream non-JSON answer url=%s request_id=%s body=%r", url, request_id, response.text[:_LOG_BODY_CHARS]
        )
        raise UpstreamBadResponse("The AI service returned an answer that is not JSON.") from exc
    return UpstreamResponse(body=body, headers=response.headers)


def _status_message(status: int) -> str:
    if status in (401, 403):
        return f"The AI service refused the credentials (HTTP {status}); check AI_SERVICES_API_KEY."
    if status == 404:
        return "The AI service has no such endpoint or deployment (HTTP 404); check AI_SERVICES_API_URL and the app."
    if status == 429:
        return "The AI service is rate limiting requests (HTTP 429); try again later."
    if 300 <= status < 400:
        return f"The AI service answered with a redirect (HTTP {status}); check AI_SERVICES_API_URL."
    return f"The AI service failed (HTTP {status})."
