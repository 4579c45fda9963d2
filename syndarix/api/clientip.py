"""The client's IP address, for every rate limit and the login throttle.

Behind reverse proxies ``REMOTE_ADDR`` is the nearest proxy's address, so every user would share one
bucket. Each proxy appends the address it received the request from to ``X-Forwarded-For``; with
``TRUSTED_PROXY_HOPS = n`` proxies of ours in front of the app, the last ``n`` entries were written by
them and the ``n``-th from the right is the client as our outermost proxy saw it. Entries further left
were sent by the client and are never believed. With ``TRUSTED_PROXY_HOPS = 0`` (the default: the app
is reached directly) the header is ignored.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """The client IP of ``request`` as a string (``REMOTE_ADDR`` when no proxy is trusted).

    With ``settings.TRUSTED_PROXY_HOPS = n > 0``: the ``n``-th ``X-Forwarded-For`` entry from the right
    (the leftmost when the header holds fewer than ``n``, i.e. the request came through fewer proxies);
    ``REMOTE_ADDR`` when the header is missing or that entry is not an IP address. Also django-ratelimit's
    ``RATELIMIT_IP_META_KEY``, so its ``ip`` keys agree.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    hops = getattr(settings, "TRUSTED_PROXY_HOPS", 0)
    if hops <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if not forwarded:
        return remote
    candidate = forwarded[-hops] if len(forwarded) >= hops else forwarded[0]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote
