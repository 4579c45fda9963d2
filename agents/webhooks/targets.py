"""Which addresses a webhook may be posted to (the SSRF rule), checked when an endpoint is saved and again at every
connection.

A target is refused when its host is, or resolves to, an address that is not a public unicast one: loopback,
private (RFC 1918, unique local), link-local (which holds the cloud metadata services, 169.254.169.254), shared
(100.64.0.0/10, Alibaba's metadata 100.100.100.200), multicast, unspecified or reserved — ``ipaddress``'s
``is_global`` is false for all of them; an IPv4-mapped IPv6 address is judged as its IPv4 address. A host that
resolves to several addresses is refused when any of them is refused. ``WEBHOOK_ALLOW_PRIVATE_TARGETS=true`` turns
the rule off (development and tests post to receivers on this machine).

Against DNS rebinding (a name that resolves to a public address when the endpoint is saved and to a private one
when the worker connects) the check is repeated at connect time by the connection itself: ``PinnedHTTPAdapter``'s
connections resolve the host once, check every address, and connect to the checked address — the name is not
resolved again, while the ``Host`` header, TLS SNI and certificate verification keep using the name.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection

from syndarix.exceptions import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(OSError):
    """A webhook target resolves to an address the SSRF rule refuses (``refused_reason``)."""


def refused_reason(address: IPAddress | str) -> str | None:
    """Why ``address`` may not be posted to (``"loopback"``, ``"private"``, ``"link-local"``...), or ``None`` when it
    is a public unicast address. Ignores ``WEBHOOK_ALLOW_PRIVATE_TARGETS`` (callers decide)."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for attribute, reason in (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local (cloud metadata)"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    ):
        if getattr(ip, attribute):
            return reason
    if not ip.is_global:
        return "not globally routable"
    return None


def private_targets_allowed() -> bool:
    """``WEBHOOK_ALLOW_PRIVATE_TARGETS``, read at each check (so it can change without a restart of the rule)."""
    return bool(getattr(settings, "WEBHOOK_ALLOW_PRIVATE_TARGETS", False))


def resolve_checked(host: str, port: int) -> list[tuple]:
    """``socket.getaddrinfo(host, port)`` (TCP) after the SSRF rule: every address must be allowed.

    Returns the ``getaddrinfo`` tuples ``(family, type, proto, canonname, sockaddr)`` to connect to.

    Raises:
        socket.gaierror: the name does not resolve.
        TargetRefused: an address is refused (and ``WEBHOOK_ALLOW_PRIVATE_TARGETS`` is false).
    """
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    if not private_targets_allowed():
        for *_, sockaddr in infos:
            reason = refused_reason(sockaddr[0].split("%", 1)[0])
            if reason:
                raise TargetRefused(
                    f"{host} resolves to {sockaddr[0]}, a {reason} address; webhooks are posted to public addresses "
                    f"only (WEBHOOK_ALLOW_PRIVATE_TARGETS)."
                )
    return infos


def validate_target_url(url: str, *, field: str = "url") -> str:
    """Check a webhook URL when it is saved: ``http`` or ``https``, a host, no credentials, and (unless
    ``WEBHOOK_ALLOW_PRIVATE_TARGETS``) a host that resolves, to allowed addresses only.

    Returns the URL unchanged.

    Raises:
        InvalidInput: 400 on ``field``, code ``invalid_url``, ``unresolvable_host`` or ``private_target``.
    """
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise InvalidInput(f"Not a valid URL: {exc}.", code="invalid_url", field=field) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("A webhook URL is http:// or https:// with a host.", code="invalid_url", field=field)
    if parts.username or parts.password:
        raise InvalidInput("A webhook URL holds no user name or password.", code="invalid_url", field=field)
    if private_targets_allowed():
        return url
    try:
        resolve_checked(parts.hostname, port)
    except TargetRefused as exc:
        raise InvalidInput(str(exc), code="private_target", field=field) from exc
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidInput(
            f"The host {parts.hostname} does not resolve ({exc}).", code="unresolvable_host", field=field
        ) from exc
    return url


class _PinnedConnectionMixin:
    """``_new_conn`` of urllib3's connections, resolving the host once through ``resolve_checked`` and connecting to
    the addresses it checked (never resolving the name again)."""

    def _new_conn(self) -> socket.socket:
        try:
            infos = resolve_checked(self._dns_host, self.port)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        except TargetRefused as exc:
            raise NewConnectionError(self, f"Refused target: {exc}") from exc
        error: OSError | None = None
        for *_, sockaddr in infos:
            try:
                return connection.create_connection(
                    (sockaddr[0], self.port), self.timeout, source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except TimeoutError as exc:
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out.") from exc
            except OSError as exc:
                error = exc
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}")


class PinnedHTTPConnection(_PinnedConnectionMixin, HTTPConnection):
    """An HTTP connection that connects only to addresses the SSRF rule allows."""


class PinnedHTTPSConnection(_PinnedConnectionMixin, HTTPSConnection):
    """An HTTPS connection that connects only to addresses the SSRF rule allows; SNI and the certificate check use
    the URL's host name."""


class PinnedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = PinnedHTTPConnection


class PinnedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = PinnedHTTPSConnection


class PinnedHTTPAdapter(HTTPAdapter):
    """A ``requests`` transport adapter whose connections are checked against the SSRF rule when they connect."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": PinnedHTTPConnectionPool, "https": PinnedHTTPSConnectionPool}


def webhook_session():
    """A ``requests.Session`` for webhook deliveries: both schemes through ``PinnedHTTPAdapter``, no proxies or
    ``.netrc`` from the environment (a proxy would connect on our behalf, unchecked), no redirects followed by the
    caller (``allow_redirects=False``)."""
    import requests

    session = requests.Session()
    session.trust_env = False
    adapter = PinnedHTTPAdapter(pool_connections=4, pool_maxsize=4, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
