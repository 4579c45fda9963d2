"""Site-wide pages outside the admin and the API: the favicon."""

from __future__ import annotations

from django.http import HttpResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

#: The Syndarix mark: a white "S" on the admin's header blue, as SVG (every current browser takes an SVG icon).
FAVICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">'
    '<rect width="64" height="64" rx="12" fill="#417690"/>'
    '<text x="32" y="47" font-family="Helvetica,Arial,sans-serif" font-size="44" font-weight="700" '
    'text-anchor="middle" fill="#fff">S</text></svg>'
)


@require_safe
@cache_control(max_age=86400, public=True)
def favicon(request) -> HttpResponse:
    """``GET /favicon.ico``: the site icon (``image/svg+xml``), for the admin, the browsable API and the docs."""
    return HttpResponse(FAVICON_SVG, content_type="image/svg+xml")
