"""HTTP client for upstream LLM services: one ``requests.Session`` per process.

Timeouts come from ``AI_SERVICES_CONNECT_TIMEOUT`` / ``AI_SERVICES_READ_TIMEOUT`` (seconds), read
at each call; they bound each socket operation. A call as a whole has a wall-clock deadline too
(``AI_SERVICES_TOTAL_TIMEOUT``): an upstream that drips its answer (headers or body) a byte at a time,
each byte within the read timeout, is cut off when the deadline passes — a watchdog shuts the call's
socket down — and the call fails with ``UpstreamTimeout``. Retries (urllib3 ``Retry``) cover only
failures where nothing reached the server:
a refused or timed-out connection is retried up to ``CONNECT_RETRIES`` times with a short backoff;
a read timeout, a dropped connection after sending, or any HTTP status is never retried, so a POST
is never sent twice. Every failure becomes an ``UpstreamError`` subclass with a message fit to
show; the upstream body is never echoed (it is logged, truncated, for operators). Answers are
streamed and read only up to ``MAX_RESPONSE_BYTES`` (plus one byte to tell that the cap was passed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry

from .exceptions import (
    UpstreamBadResponse,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamStreamBroken,
    UpstreamTimeout,
    UpstreamUnreachable,
)

logger = logging.getLogger(__name__)

#: Extra attempts after a connection could not be established (nothing was sent).
CONNECT_RETRIES = 2
#: Backoff factor (seconds) between connection attempts: 0 s, then 0.4 s.
CONNECT_BACKOFF = 0.2
#: Largest upstream answer accepted (bytes); a refined template is at most a few hundred KB.
MAX_RESPONSE_BYTES = 5 * 1024 * 1024
_LOG_BODY_CHARS = 500
#: Characters of the upstream's own error text kept on ``UpstreamHTTPError.detail``.
UPSTREAM_DETAIL_CHARS = 500
#: Bytes asked of the socket per read while streaming an answer.
_CHUNK_BYTES = 64 * 1024

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


# --- The wall-clock deadline of a call ------------------------------------------------------------


class Deadline:
    """A call's wall-clock limit: when ``seconds`` have passed, every socket the call uses is shut down.

    Shutting a socket down wakes a thread blocked reading it (the read returns end-of-file or fails), so no
    upstream can hold the caller past the deadline however slowly it answers. The sockets are those the
    call's connections use (``_DeadlineConnectionMixin`` registers them, fresh or reused from the pool).
    ``close()`` ends the watch; a connection shut down by an expired deadline is dropped, never pooled.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expires_at = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._done = False
        self._timer = threading.Timer(max(0.0, seconds), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        """Seconds left (0 when expired)."""
        return max(0.0, self.expires_at - time.monotonic())

    def watch(self, sock: socket.socket | None) -> None:
        """Shut ``sock`` down when the deadline passes (at once if it has)."""
        if sock is None:
            return
        with self._lock:
            if self._done:
                return
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def close(self) -> None:
        """Stop watching (the call is over)."""
        with self._lock:
            self._done = True
            self._sockets.clear()
        self._timer.cancel()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


#: The deadline of the call the current thread is making, if any.
_current = threading.local()


class _DeadlineConnectionMixin:
    """Registers the connection's socket with the current thread's ``Deadline`` on connect and on each request."""

    def connect(self) -> None:
        super().connect()
        _watch(self)

    def request(self, *args, **kwargs):
        _watch(self)
        return super().request(*args, **kwargs)


def _watch(connection) -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.watch(getattr(connection, "sock", None))


class _DeadlineHTTPConnection(_DeadlineConnectionMixin, HTTPConnection):
    pass


class _DeadlineHTTPSConnection(_DeadlineConnectionMixin, HTTPSConnection):
    pass


class _DeadlineHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    """``HTTPAdapter`` whose connections honour the calling thread's ``Deadline``."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _DeadlineHTTPConnectionPool, "https": _DeadlineHTTPSConnectionPool,
        }


def get_session() -> requests.Session:
    """The process's session (created on first use, and again after a fork)."""
    global _session, _session_pid
    pid = os.getpid()
    if _session is None or _session_pid != pid:
        with _lock:
            if _session is None or _session_pid != pid:
                session = requests.Session()
                adapter = DeadlineAdapter(max_retries=connect_only_retry(), pool_connections=4, pool_maxsize=16)
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


def post_json(
    url: str, *, payload: dict[str, Any], headers: dict[str, str], request_id: str,
    settings_prefix: str = "AI_SERVICES", total_timeout: float | None = None,
    on_event: Callable[[Any], None] | None = None,
) -> UpstreamResponse:
    """POST ``payload`` as JSON to ``url`` and return the parsed JSON answer.

    With ``on_event``, an answer of type ``text/event-stream`` (a streamed chat completion) is read as it arrives:
    ``on_event`` gets each ``data:`` line's JSON (``data: [DONE]`` ends it), within the same timeouts and size cap,
    and the returned ``body`` is ``None``. An answer of another type is read as without it.

    ``settings_prefix`` names the settings of the caller's upstream: the timeouts
    ``<prefix>_CONNECT_TIMEOUT`` / ``<prefix>_READ_TIMEOUT`` (seconds, per socket operation) and
    ``<prefix>_TOTAL_TIMEOUT`` (seconds, wall clock for the whole call, connection retries included;
    ``total_timeout`` overrides it) and, in error messages, the ``<prefix>_API_URL`` / ``<prefix>_API_KEY``
    to check (``AI_SERVICES`` for the AI tools, ``AGENT_LLM`` for the agent runtime).

    ``request_id`` is sent as ``X-Request-ID`` so the upstream's logs can be correlated. The answer
    is streamed: an announced ``Content-Length`` over ``MAX_RESPONSE_BYTES`` is refused before the
    body is read, and otherwise at most ``MAX_RESPONSE_BYTES + 1`` (decoded) bytes are read before
    the connection is closed, so an oversized answer never sits in memory whole.

    Raises:
        UpstreamTimeout: no connection within the connect timeout, no data within the read timeout, or no
            complete answer within the total timeout.
        UpstreamUnreachable: the connection failed (after the connect retries) or broke mid-answer.
        UpstreamHTTPError: the upstream answered a non-2xx status (``status``, ``retry_after``).
        UpstreamBadResponse: the answer is too large, not JSON, or nested too deeply to decode.
    """
    total = total_timeout if total_timeout is not None else getattr(settings, f"{settings_prefix}_TOTAL_TIMEOUT")
    deadline = Deadline(total)
    _current.deadline = deadline
    try:
        return _post_json(url, payload=payload, headers=headers, request_id=request_id,
                          settings_prefix=settings_prefix, deadline=deadline, on_event=on_event)
    except UpstreamError as exc:
        if deadline.expired and not isinstance(exc, UpstreamTimeout):
            # The watchdog's shutdown shows as a broken or truncated answer; say what happened.
            logger.warning("AI upstream past its deadline url=%s request_id=%s (%g s)", url, request_id, total)
            raise UpstreamTimeout(f"The AI service did not answer within {total:g} s.") from exc
        raise
    finally:
        _current.deadline = None
        deadline.close()


def _post_json(
    url: str, *, payload: dict[str, Any], headers: dict[str, str], request_id: str, settings_prefix: str,
    deadline: Deadline, on_event: Callable[[Any], None] | None = None,
) -> UpstreamResponse:
    connect_timeout = getattr(settings, f"{settings_prefix}_CONNECT_TIMEOUT")
    read_timeout = getattr(settings, f"{settings_prefix}_READ_TIMEOUT")
    try:
        response = get_session().post(
            url,
            json=payload,
            headers={**headers, "Content-Type": "application/json", "X-Request-ID": request_id},
            timeout=(min(connect_timeout, deadline.seconds), min(read_timeout, deadline.seconds)),
            allow_redirects=False,
            stream=True,
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

    with response:  # closes the connection when the body was not read to its end
        if not 200 <= response.status_code < 300:
            excerpt = _read_at_most(response, _LOG_BODY_CHARS * 4, url=url, request_id=request_id, quiet=True)
            logger.warning(
                "AI upstream HTTP %s url=%s request_id=%s body=%r",
                response.status_code, url, request_id, _text(excerpt)[:_LOG_BODY_CHARS],
            )
            raise UpstreamHTTPError(
                _status_message(response.status_code, settings_prefix),
                status=response.status_code,
                retry_after=_retry_after_seconds(response),
                detail=error_detail(excerpt),
            )
        if on_event is not None and response.headers.get("Content-Type", "").startswith("text/event-stream"):
            _read_events(response, on_event, url=url, request_id=request_id, read_timeout=read_timeout)
            if deadline.expired:
                raise UpstreamUnreachable("The AI service's answer was cut off at the deadline.")
            return UpstreamResponse(body=None, headers=response.headers)
        if _announced_length(response) > MAX_RESPONSE_BYTES:
            logger.warning("AI upstream answer too large url=%s request_id=%s length=%s", url, request_id,
                           response.headers.get("Content-Length"))
            raise UpstreamBadResponse("The AI service returned an answer that is too large.")
        content = _read_at_most(
            response, MAX_RESPONSE_BYTES + 1, url=url, request_id=request_id, read_timeout=read_timeout
        )
        if len(content) > MAX_RESPONSE_BYTES:
            logger.warning("AI upstream answer too large url=%s request_id=%s (over %s bytes)", url, request_id,
                           MAX_RESPONSE_BYTES)
            raise UpstreamBadResponse("The AI service returned an answer that is too large.")
    if deadline.expired:  # the end of the body may be the watchdog's shutdown, not the upstream's
        raise UpstreamUnreachable("The AI service's answer was cut off at the deadline.")
    try:
        body = json.loads(content)
    except RecursionError as exc:
        logger.warning("AI upstream answer nested too deeply url=%s request_id=%s", url, request_id)
        raise UpstreamBadResponse("The AI service returned an answer nested too deeply to read.") from exc
    except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not UTF-8/16/32
        logger.warning(
            "AI upstream non-JSON answer url=%s request_id=%s body=%r", url, request_id,
            _text(content[: _LOG_BODY_CHARS * 4])[:_LOG_BODY_CHARS],
        )
        raise UpstreamBadResponse("The AI service returned an answer that is not JSON.") from exc
    return UpstreamResponse(body=body, headers=response.headers)


def _read_events(response: requests.Response, on_event: Callable[[Any], None], *, url: str, request_id: str,
                 read_timeout: float) -> None:
    """Read a ``text/event-stream`` answer line by line, passing each ``data:`` JSON to ``on_event``, until
    ``data: [DONE]`` or its end; at most ``MAX_RESPONSE_BYTES`` in all."""
    size = 0
    try:
        for line in response.iter_lines(chunk_size=None):
            size += len(line) + 1
            if size > MAX_RESPONSE_BYTES:
                raise UpstreamBadResponse("The AI service returned an answer that is too large.")
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                return
            try:
                on_event(json.loads(data))
            except ValueError as exc:
                logger.warning("AI upstream stream chunk not JSON url=%s request_id=%s", url, request_id)
                raise UpstreamStreamBroken("The AI service streamed a chunk that is not JSON.") from exc
    except requests.exceptions.ConnectionError as exc:
        if isinstance(getattr(exc, "args", [None])[0], Exception) and "timed out" in str(exc):
            raise UpstreamTimeout(f"The AI service did not answer within {read_timeout:g} s.") from exc
        raise UpstreamUnreachable("The AI service's streamed answer broke off.") from exc
    except requests.exceptions.RequestException as exc:
        raise UpstreamUnreachable("The AI service's streamed answer broke off.") from exc


def error_detail(body: bytes) -> str:
    """The upstream's own text in an error answer: ``error.message`` (OpenAI, vLLM, LiteLLM, Ollama's ``error``
    string), FastAPI's ``detail`` (a validation error's messages, with their fields), or ``message``; else the start
    of the body. Whitespace is collapsed and the text cut at ``UPSTREAM_DETAIL_CHARS``; ``""`` for an empty body."""
    text = _text(body).strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        found = error.get("message") if isinstance(error, dict) else error
        found = found or data.get("detail") or data.get("message")
        if isinstance(found, list):  # FastAPI/pydantic: [{"loc": [...], "msg": "..."}]
            found = "; ".join(
                f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg')}" if isinstance(item, dict)
                else str(item)
                for item in found
            )
        if found:
            text = found if isinstance(found, str) else json.dumps(found)
    text = " ".join(text.split())
    return text if len(text) <= UPSTREAM_DETAIL_CHARS else text[: UPSTREAM_DETAIL_CHARS - 1] + "…"


def _announced_length(response: requests.Response) -> int:
    """The ``Content-Length`` the upstream announced (0 when absent or unreadable)."""
    try:
        return int(response.headers.get("Content-Length") or 0)
    except ValueError:
        return 0


def _read_at_most(
    response: requests.Response, limit: int, *, url: str, request_id: str, quiet: bool = False,
    read_timeout: float | None = None,
) -> bytes:
    """Read the body of a streamed ``response`` up to ``limit`` decoded bytes (fewer at its end).

    Raises ``UpstreamTimeout`` / ``UpstreamUnreachable`` when the body stalls or breaks; with
    ``quiet`` (reading only for the log) a failure returns what was read so far instead.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        while size < limit:
            chunk = response.raw.read(min(_CHUNK_BYTES, limit - size), decode_content=True)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        if quiet:
            return b"".join(chunks)
        if isinstance(exc, urllib3.exceptions.ReadTimeoutError | TimeoutError):
            logger.warning("AI upstream read timeout mid-answer url=%s request_id=%s", url, request_id)
            raise UpstreamTimeout(f"The AI service did not answer within {read_timeout:g} s.") from exc
        logger.warning("AI upstream answer broke off url=%s request_id=%s: %s", url, request_id, exc)
        raise UpstreamUnreachable("Could not reach the AI service.") from exc
    return b"".join(chunks)


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _retry_after_seconds(response: requests.Response) -> float | None:
    """The ``Retry-After`` header in seconds (the delta-seconds form only), or ``None``."""
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _status_message(status: int, prefix: str = "AI_SERVICES") -> str:
    if status in (401, 403):
        return f"The AI service refused the credentials (HTTP {status}); check {prefix}_API_KEY."
    if status == 404:
        return f"The AI service has no such endpoint or deployment (HTTP 404); check {prefix}_API_URL and the app."
    if status == 429:
        return "The AI service is rate limiting requests (HTTP 429); try again later."
    if 300 <= status < 400:
        return f"The AI service answered with a redirect (HTTP {status}); check {prefix}_API_URL."
    return f"The AI service failed (HTTP {status})."
